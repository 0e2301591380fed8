// Minimal protocol-buffers wire reader and writer (engine-free).
//
// Supports what the ONNX ModelProto and the policy channel messages need: varints, 32/64-bit fixed values,
// length-delimited fields (bytes, strings, sub-messages, packed repeated scalars) and skipping of unknown fields,
// groups included. Malformed input (a field cut short, a bad wire type, invalid UTF-8 in a string) throws
// ProtoFormatException, matching what the reference protobuf runtime refuses to parse.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Unimarl.Core
{
    /// <summary>Bytes that are not a valid protobuf message.</summary>
    public class ProtoFormatException : Exception
    {
        public ProtoFormatException(string message) : base(message) { }
    }

    public enum WireType { Varint = 0, Fixed64 = 1, LengthDelimited = 2, StartGroup = 3, EndGroup = 4, Fixed32 = 5 }

    /// <summary>Reads one message (or sub-message) from a byte range.</summary>
    public sealed class ProtoReader
    {
        /// <summary>Deepest nesting of groups accepted: the reference protobuf runtime's default recursion limit.</summary>
        public const int MaxGroupDepth = 100;

        static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);
        readonly byte[] m_Buffer;
        int m_Position;
        readonly int m_End;

        public ProtoReader(byte[] buffer) : this(buffer, 0, buffer.Length) { }

        public ProtoReader(byte[] buffer, int offset, int count)
        {
            m_Buffer = buffer;
            m_Position = offset;
            m_End = offset + count;
        }

        public bool AtEnd { get { return m_Position >= m_End; } }
        public int FieldNumber { get; private set; }
        public WireType WireType { get; private set; }

        /// <summary>Advances to the next field; false at the end of the message.</summary>
        public bool Next()
        {
            if (AtEnd) return false;
            ulong tag = ReadVarint();
            int wire = (int)(tag & 7);
            if (wire > 5) throw new ProtoFormatException("invalid wire type " + wire + " at byte " + m_Position);
            FieldNumber = (int)(tag >> 3);
            if (FieldNumber == 0) throw new ProtoFormatException("field number 0 at byte " + m_Position);
            WireType = (WireType)wire;
            if (WireType == WireType.EndGroup) throw new ProtoFormatException("unmatched end-group at byte " + m_Position);
            return true;
        }

        public ulong ReadVarint()
        {
            ulong result = 0;
            for (int shift = 0; shift < 70; shift += 7)
            {
                if (m_Position >= m_End) throw new ProtoFormatException("varint runs past the end of the message");
                byte b = m_Buffer[m_Position++];
                if (shift < 64) result |= (ulong)(b & 0x7f) << shift;
                if ((b & 0x80) == 0) return result;
            }
            throw new ProtoFormatException("varint longer than 10 bytes");
        }

        public long ReadInt64() { return (long)ReadVarint(); }
        public int ReadInt32() { return (int)ReadVarint(); }
        public bool ReadBool() { return ReadVarint() != 0; }

        public uint ReadFixed32()
        {
            Need(4);
            uint v = BitConverter.ToUInt32(m_Buffer, m_Position);
            m_Position += 4;
            return v;
        }

        public ulong ReadFixed64()
        {
            Need(8);
            ulong v = BitConverter.ToUInt64(m_Buffer, m_Position);
            m_Position += 8;
            return v;
        }

        public float ReadFloat() { Need(4); float v = BitConverter.ToSingle(m_Buffer, m_Position); m_Position += 4; return v; }
        public double ReadDouble() { Need(8); double v = BitConverter.ToDouble(m_Buffer, m_Position); m_Position += 8; return v; }

        /// <summary>Length of the current length-delimited field, checked against the message end.</summary>
        int ReadLength()
        {
            ulong length = ReadVarint();
            if (length > (ulong)(m_End - m_Position))
                throw new ProtoFormatException("field of " + length + " bytes runs past the end of the message");
            return (int)length;
        }

        public byte[] ReadBytes()
        {
            int length = ReadLength();
            var result = new byte[length];
            Buffer.BlockCopy(m_Buffer, m_Position, result, 0, length);
            m_Position += length;
            return result;
        }

        public string ReadString()
        {
            int length = ReadLength();
            try
            {
                string s = StrictUtf8.GetString(m_Buffer, m_Position, length);
                m_Position += length;
                return s;
            }
            catch (ArgumentException e)
            {
                throw new ProtoFormatException("string field is not valid UTF-8: " + e.Message);
            }
        }

        /// <summary>A reader over the current length-delimited field (a sub-message or a packed array).</summary>
        public ProtoReader ReadMessage()
        {
            int length = ReadLength();
            var sub = new ProtoReader(m_Buffer, m_Position, length);
            m_Position += length;
            return sub;
        }

        /// <summary>Repeated int64 (packed or not) into <paramref name="into"/>.</summary>
        public void ReadInt64s(List<long> into)
        {
            if (WireType == WireType.LengthDelimited)
            {
                var packed = ReadMessage();
                while (!packed.AtEnd) into.Add(packed.ReadInt64());
            }
            else into.Add(ReadInt64());
        }

        /// <summary>Repeated float (packed or not) into <paramref name="into"/>.</summary>
        public void ReadFloats(List<float> into)
        {
            if (WireType == WireType.LengthDelimited)
            {
                var packed = ReadMessage();
                while (!packed.AtEnd) into.Add(packed.ReadFloat());
            }
            else into.Add(ReadFloat());
        }

        /// <summary>Repeated double (packed or not) into <paramref name="into"/>.</summary>
        public void ReadDoubles(List<double> into)
        {
            if (WireType == WireType.LengthDelimited)
            {
                var packed = ReadMessage();
                while (!packed.AtEnd) into.Add(packed.ReadDouble());
            }
            else into.Add(ReadDouble());
        }

        public void Skip()
        {
            switch (WireType)
            {
                case WireType.Varint: ReadVarint(); break;
                case WireType.Fixed64: Need(8); m_Position += 8; break;
                case WireType.Fixed32: Need(4); m_Position += 4; break;
                case WireType.LengthDelimited: int length = ReadLength(); m_Position += length; break;
                case WireType.StartGroup: SkipGroup(FieldNumber); break;
                default: throw new ProtoFormatException("cannot skip wire type " + WireType);
            }
        }

        /// <summary>Skips a group and the groups nested in it, without recursion (hostile input could nest them
        /// a million deep); nesting beyond <see cref="MaxGroupDepth"/> is refused.</summary>
        void SkipGroup(int field)
        {
            var open = new Stack<int>();
            open.Push(field);
            while (open.Count > 0)
            {
                if (AtEnd) throw new ProtoFormatException("group " + open.Peek() + " is not closed");
                ulong tag = ReadVarint();
                int wire = (int)(tag & 7);
                int number = (int)(tag >> 3);
                if (wire > 5 || number == 0) throw new ProtoFormatException("invalid tag inside group " + open.Peek());
                if (wire == (int)WireType.EndGroup)
                {
                    if (number != open.Peek()) throw new ProtoFormatException("group " + open.Peek() + " closed as " + number);
                    open.Pop();
                }
                else if (wire == (int)WireType.StartGroup)
                {
                    if (open.Count >= MaxGroupDepth)
                        throw new ProtoFormatException("groups nested deeper than " + MaxGroupDepth + " at byte " + m_Position);
                    open.Push(number);
                }
                else
                {
                    FieldNumber = number;
                    WireType = (WireType)wire;
                    Skip();
                }
            }
        }

        void Need(int count)
        {
            if (m_End - m_Position < count)
                throw new ProtoFormatException(count + "-byte value runs past the end of the message");
        }
    }

    /// <summary>Writes protobuf fields (proto3: default values are omitted by the callers).</summary>
    public sealed class ProtoWriter
    {
        readonly MemoryStream m_Stream = new MemoryStream();

        public byte[] ToArray() { return m_Stream.ToArray(); }

        public void WriteVarint(ulong value)
        {
            while (value >= 0x80)
            {
                m_Stream.WriteByte((byte)(value | 0x80));
                value >>= 7;
            }
            m_Stream.WriteByte((byte)value);
        }

        public void WriteTag(int field, WireType wire) { WriteVarint((ulong)((field << 3) | (int)wire)); }

        public void WriteInt64(int field, long value)
        {
            if (value == 0) return;
            WriteTag(field, WireType.Varint);
            WriteVarint((ulong)value);
        }

        public void WriteBool(int field, bool value)
        {
            if (!value) return;
            WriteTag(field, WireType.Varint);
            WriteVarint(1);
        }

        public void WriteBytes(int field, byte[] value)
        {
            if (value == null || value.Length == 0) return;
            WriteTag(field, WireType.LengthDelimited);
            WriteVarint((ulong)value.Length);
            m_Stream.Write(value, 0, value.Length);
        }

        public void WriteString(int field, string value)
        {
            if (string.IsNullOrEmpty(value)) return;
            WriteBytes(field, Encoding.UTF8.GetBytes(value));
        }
    }
}
