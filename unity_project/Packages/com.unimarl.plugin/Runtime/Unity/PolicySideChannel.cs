// The policy side channel: receives chunked ONNX models from the trainer and answers with acknowledgements.
//
// Channel id and message formats: Unimarl.Core.PolicyChannelIds / PolicyCodec (protos/unimarl/policy_channel.proto).
// Rejected chunks are acknowledged here at once; a complete model is handed to the handlers (PolicyHotSwap), and
// the one that takes it acknowledges it with Acknowledge once it has loaded the model (or failed to). Every
// complete model is answered: LoadFailed when no handler takes it or a handler throws (ML-Agents'
// SideChannel.ProcessMessage would log and skip the message, SideChannel.cs:36-51, and the trainer would wait).
using System;
using System.Collections.Generic;
using Unimarl.Core;
using Unity.MLAgents.SideChannels;

namespace Unimarl.Unity
{
    public sealed class PolicySideChannel : SideChannel
    {
        readonly PolicyAssembler m_Assembler;

        readonly List<Func<ReceivedPolicy, bool>> m_Handlers = new List<Func<ReceivedPolicy, bool>>();

        public PolicySideChannel(long maxModelSize)
        {
            ChannelId = PolicyChannelIds.ChannelId;
            m_Assembler = new PolicyAssembler(maxModelSize);
        }

        protected override void OnMessageReceived(IncomingMessage msg)
        {
            ReceivedPolicy policy;
            try
            {
                policy = m_Assembler.Feed(msg.GetRawBytes());
            }
            catch (PolicyRejectedException e)
            {
                UnityEngine.Debug.LogWarning("[unimarl] policy rejected: " + e.Message);
                Send(PolicyAck.Encode(e.Behavior, e.Version, e.Sha256, e.Reason, e.Message));
                return;
            }
            if (policy == null) return;
            bool taken = false;
            foreach (var handler in m_Handlers.ToArray())
            {
                try
                {
                    taken |= handler(policy);
                }
                catch (Exception e)
                {
                    UnityEngine.Debug.LogError("[unimarl] policy " + policy.Behavior + " v" + policy.Version + ": " + e);
                    Acknowledge(policy, PolicyRejectReason.LoadFailed, e.GetType().Name + ": " + e.Message);
                    return;
                }
            }
            if (!taken)
                Acknowledge(policy, PolicyRejectReason.LoadFailed, "no PolicyHotSwap component handles " + policy.Behavior +
                    " (add one with that Behavior Name and Team Id -1 or the pushed team)");
        }

        /// <summary>Adds a handler, called on the main thread for every complete, hash-checked model; it returns
        /// whether it took the model (and then acknowledges it).</summary>
        public void AddHandler(Func<ReceivedPolicy, bool> handler) { m_Handlers.Add(handler); }

        public void RemoveHandler(Func<ReceivedPolicy, bool> handler) { m_Handlers.Remove(handler); }

        /// <summary>Tells the trainer whether <paramref name="policy"/> is now in use.</summary>
        public void Acknowledge(ReceivedPolicy policy, PolicyRejectReason reason, string error)
        {
            Send(PolicyAck.Encode(policy.Behavior, policy.Version, policy.Sha256, reason, error));
        }

        void Send(byte[] payload)
        {
            using (var message = new OutgoingMessage())
            {
                message.SetRawBytes(payload);
                QueueMessageToSend(message);
            }
        }
    }
}
