// Codec of unimarl's policy side channel (engine-free): reassembles chunked ONNX models and encodes acks.
//
// Wire messages: protos/unimarl/policy_channel.proto (PolicyChunkProto, PolicyAckProto); one side-channel payload
// is one serialized message. The assembler applies the same rules, in the same order, with the same rejection
// reasons as the Python codec (protos/policy_wire.py):
//  1. unparseable payload, empty behaviour name, hash not 32 bytes, chunk_count < 1, chunk_index outside
//     [0, chunk_count), total_size < 0: Corrupt;
//  2. a non-first chunk of a transfer rejected before (same behaviour, version, hash) is ignored;
//  3. total_size above the maximum model size: Oversized;
//  4. chunk 0 starts a transfer (replacing an unfinished one) unless the same transfer is under way:
//     DuplicateChunk. Other chunks need their transfer under way (else OutOfOrder), the size/count declared by
//     chunk 0 (else Corrupt), the next expected index (earlier: DuplicateChunk, later: OutOfOrder);
//  5. more bytes than total_size: Corrupt;
//  6. after the last chunk: fewer bytes than total_size: Truncated; wrong SHA-256: HashMismatch.
// A rejection from rule 3 on ends the transfer it belongs to.
using System;
using System.Collections.Generic;
using System.IO;
using System.Security.Cryptography;

namespace Unimarl.Core
{
    /// <summary>PolicyRejectReasonProto; the numbers are the wire values.</summary>
    public enum PolicyRejectReason
    {
        Accepted = 0, Corrupt = 1, Truncated = 2, Oversized = 3, HashMismatch = 4, OutOfOrder = 5,
        DuplicateChunk = 6, LoadFailed = 7,
    }

    public class PolicyRejectedException : Exception
    {
        public readonly PolicyRejectReason Reason;
        public readonly string Behavior;
        public readonly long Version;
        public readonly byte[] Sha256;

        public PolicyRejectedException(PolicyRejectReason reason, string message, string behavior, long version, byte[] sha256)
            : base(reason + ": " + message)
        {
            Reason = reason;
            Behavior = behavior ?? "";
            Version = version;
            Sha256 = sha256 ?? new byte[0];
        }
    }

    /// <summary>A complete, hash-checked model.</summary>
    public sealed class ReceivedPolicy
    {
        public string Behavior;
        public long Version;
        public byte[] Sha256;
        public byte[] Model;
    }

    public sealed class PolicyChunk
    {
        public string BehaviorName = "";
        public long ModelVersion;
        public byte[] Sha256 = new byte[0];
        public long TotalSize;
        public int ChunkIndex;
        public int ChunkCount;
        public byte[] Data = new byte[0];

        /// <summary>Parses a PolicyChunkProto; a field with an unexpected wire type is skipped like an unknown one.</summary>
        public static PolicyChunk Parse(byte[] payload)
        {
            var c = new PolicyChunk();
            var r = new ProtoReader(payload);
            while (r.Next())
            {
                bool varint = r.WireType == WireType.Varint, bytes = r.WireType == WireType.LengthDelimited;
                if (r.FieldNumber == 1 && bytes) c.BehaviorName = r.ReadString();
                else if (r.FieldNumber == 2 && varint) c.ModelVersion = r.ReadInt64();
                else if (r.FieldNumber == 3 && bytes) c.Sha256 = r.ReadBytes();
                else if (r.FieldNumber == 4 && varint) c.TotalSize = r.ReadInt64();
                else if (r.FieldNumber == 5 && varint) c.ChunkIndex = r.ReadInt32();
                else if (r.FieldNumber == 6 && varint) c.ChunkCount = r.ReadInt32();
                else if (r.FieldNumber == 7 && bytes) c.Data = r.ReadBytes();
                else r.Skip();
            }
            return c;
        }
    }

    public static class PolicyChannelIds
    {
        /// <summary>Side-channel id of the policy channel (same GUID as protos/policy_wire.py).</summary>
        public static readonly Guid ChannelId = new Guid("7f3c2a91-5b6e-4d08-9c1a-2e4b6d8f0a13");
        public const int DefaultMaxModelSize = 64 * 1024 * 1024;
    }

    public static class PolicyAck
    {
        /// <summary>Serialized PolicyAckProto; ok is true exactly when reason is Accepted.</summary>
        public static byte[] Encode(string behavior, long version, byte[] sha256, PolicyRejectReason reason, string error)
        {
            var w = new ProtoWriter();
            w.WriteString(1, behavior);
            w.WriteInt64(2, version);
            w.WriteBytes(3, sha256);
            w.WriteBool(4, reason == PolicyRejectReason.Accepted);
            w.WriteInt64(5, (long)reason);
            w.WriteString(6, error);
            return w.ToArray();
        }
    }

    public sealed class PolicyAssembler
    {
        sealed class Transfer
        {
            public long Version;
            public byte[] Sha256;
            public long TotalSize;
            public int ChunkCount;
            public int NextIndex;
            public MemoryStream Data = new MemoryStream();
        }

        readonly long m_MaxModelSize;
        readonly Dictionary<string, Transfer> m_Transfers = new Dictionary<string, Transfer>();
        readonly Dictionary<string, KeyValuePair<long, byte[]>> m_Aborted = new Dictionary<string, KeyValuePair<long, byte[]>>();

        public PolicyAssembler(long maxModelSize = PolicyChannelIds.DefaultMaxModelSize) { m_MaxModelSize = maxModelSize; }

        /// <summary>Takes one chunk payload; returns the model after its last chunk, null while incomplete or ignored.
        /// Throws PolicyRejectedException with the reason when the chunk or its transfer is rejected.</summary>
        public ReceivedPolicy Feed(byte[] payload)
        {
            var chunk = ParseChecked(payload);
            try
            {
                KeyValuePair<long, byte[]> aborted;
                if (chunk.ChunkIndex != 0 && m_Aborted.TryGetValue(chunk.BehaviorName, out aborted) && SameKey(aborted, chunk))
                    return null;
                if (chunk.TotalSize > m_MaxModelSize)
                    Reject(PolicyRejectReason.Oversized, chunk, "model of " + chunk.TotalSize + " bytes exceeds the maximum of " +
                        m_MaxModelSize + ": raise the game's limit or shrink the network");
                var transfer = TransferFor(chunk);
                if (transfer.Data.Length + chunk.Data.Length > transfer.TotalSize)
                    Reject(PolicyRejectReason.Corrupt, chunk, "chunk " + chunk.ChunkIndex + " brings the model past its declared " +
                        transfer.TotalSize + " bytes");
                transfer.Data.Write(chunk.Data, 0, chunk.Data.Length);
                transfer.NextIndex++;
                return transfer.NextIndex < transfer.ChunkCount ? null : Complete(chunk, transfer);
            }
            catch (PolicyRejectedException)
            {
                Transfer current;
                if (m_Transfers.TryGetValue(chunk.BehaviorName, out current) && current.Version == chunk.ModelVersion &&
                    SameHash(current.Sha256, chunk.Sha256))
                    m_Transfers.Remove(chunk.BehaviorName);
                m_Aborted[chunk.BehaviorName] = new KeyValuePair<long, byte[]>(chunk.ModelVersion, chunk.Sha256);
                throw;
            }
        }

        static PolicyChunk ParseChecked(byte[] payload)
        {
            PolicyChunk chunk;
            try
            {
                chunk = PolicyChunk.Parse(payload);
            }
            catch (ProtoFormatException e)
            {
                throw new PolicyRejectedException(PolicyRejectReason.Corrupt, "chunk of " + payload.Length + " bytes does not parse: " +
                    e.Message, "", 0, null);
            }
            string problem = null;
            if (chunk.BehaviorName.Length == 0) problem = "behaviour name is empty";
            else if (chunk.Sha256.Length != 32) problem = "sha256 has " + chunk.Sha256.Length + " bytes, expected 32";
            else if (chunk.ChunkCount < 1 || chunk.ChunkIndex < 0 || chunk.ChunkIndex >= chunk.ChunkCount)
                problem = "chunk index " + chunk.ChunkIndex + " is outside a count of " + chunk.ChunkCount;
            else if (chunk.TotalSize < 0) problem = "negative total size " + chunk.TotalSize;
            if (problem != null)
                throw new PolicyRejectedException(PolicyRejectReason.Corrupt, problem, chunk.BehaviorName, chunk.ModelVersion, chunk.Sha256);
            return chunk;
        }

        Transfer TransferFor(PolicyChunk chunk)
        {
            Transfer current;
            m_Transfers.TryGetValue(chunk.BehaviorName, out current);
            bool same = current != null && current.Version == chunk.ModelVersion && SameHash(current.Sha256, chunk.Sha256);
            if (chunk.ChunkIndex == 0)
            {
                if (same) Reject(PolicyRejectReason.DuplicateChunk, chunk, "chunk 0 of a transfer already under way");
                var transfer = new Transfer
                {
                    Version = chunk.ModelVersion, Sha256 = chunk.Sha256, TotalSize = chunk.TotalSize, ChunkCount = chunk.ChunkCount,
                };
                m_Transfers[chunk.BehaviorName] = transfer;
                m_Aborted.Remove(chunk.BehaviorName);
                return transfer;
            }
            if (!same) Reject(PolicyRejectReason.OutOfOrder, chunk, "chunk " + chunk.ChunkIndex + " arrived without chunk 0 of its transfer");
            if (current.TotalSize != chunk.TotalSize || current.ChunkCount != chunk.ChunkCount)
                Reject(PolicyRejectReason.Corrupt, chunk, "chunk " + chunk.ChunkIndex + " declares size/count " + chunk.TotalSize + "/" +
                    chunk.ChunkCount + ", chunk 0 " + current.TotalSize + "/" + current.ChunkCount);
            if (chunk.ChunkIndex < current.NextIndex) Reject(PolicyRejectReason.DuplicateChunk, chunk, "chunk " + chunk.ChunkIndex + " arrived twice");
            if (chunk.ChunkIndex > current.NextIndex)
                Reject(PolicyRejectReason.OutOfOrder, chunk, "chunk " + chunk.ChunkIndex + " arrived before chunk " + current.NextIndex);
            return current;
        }

        ReceivedPolicy Complete(PolicyChunk chunk, Transfer transfer)
        {
            m_Transfers.Remove(chunk.BehaviorName);
            byte[] model = transfer.Data.ToArray();
            if (model.Length < transfer.TotalSize)
                Reject(PolicyRejectReason.Truncated, chunk, "received " + model.Length + " of " + transfer.TotalSize + " bytes");
            byte[] digest;
            using (var sha = SHA256.Create()) digest = sha.ComputeHash(model);
            if (!SameHash(digest, transfer.Sha256))
                Reject(PolicyRejectReason.HashMismatch, chunk, "the reassembled model does not match its SHA-256");
            return new ReceivedPolicy { Behavior = chunk.BehaviorName, Version = transfer.Version, Sha256 = transfer.Sha256, Model = model };
        }

        static bool SameKey(KeyValuePair<long, byte[]> key, PolicyChunk chunk)
        {
            return key.Key == chunk.ModelVersion && SameHash(key.Value, chunk.Sha256);
        }

        static bool SameHash(byte[] a, byte[] b)
        {
            if (a.Length != b.Length) return false;
            for (int i = 0; i < a.Length; i++) if (a[i] != b[i]) return false;
            return true;
        }

        static void Reject(PolicyRejectReason reason, PolicyChunk chunk, string message)
        {
            throw new PolicyRejectedException(reason, chunk.BehaviorName + " v" + chunk.ModelVersion + ": " + message,
                chunk.BehaviorName, chunk.ModelVersion, chunk.Sha256);
        }
    }
}
