// The policy side channel: receives chunked ONNX models from the trainer and answers with acknowledgements.
//
// Channel id and message formats: Unimarl.Core.PolicyChannelIds / PolicyCodec (protos/unimarl/policy_channel.proto).
// Rejected chunks are acknowledged here at once; a complete model is handed to PolicyReceived, whose handler
// acknowledges it with Acknowledge once it has loaded the model (or failed to).
using System;
using Unimarl.Core;
using Unity.MLAgents.SideChannels;

namespace Unimarl.Unity
{
    public sealed class PolicySideChannel : SideChannel
    {
        readonly PolicyAssembler m_Assembler;

        /// <summary>Raised on the main thread for every complete, hash-checked model.</summary>
        public event Action<ReceivedPolicy> PolicyReceived;

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
            var handler = PolicyReceived;
            if (handler == null)
                Acknowledge(policy, PolicyRejectReason.LoadFailed, "no PolicyHotSwap component handles " + policy.Behavior);
            else handler(policy);
        }

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
