// Applies policies pushed by the trainer to the agents of one behaviour.
//
// In the Editor, a received model is written under Assets/UnimarlPolicies/, imported as a Sentis ModelAsset and
// given to every agent of the behaviour with Agent.SetModel (agents in Inference mode then run it with Sentis).
// In player builds the ONNX importer is not available, so the model runs on the plug-in's engine-free evaluator:
// the agent's Heuristic calls TryDecide (set Behavior Type to Heuristic Only). Each model is acknowledged to the
// trainer: Accepted once loaded, LoadFailed with the reason otherwise. Team Id (-1: any) restricts the component
// to the models pushed for one team, e.g. a self-play opponent team driven inside the game.
//
// Models with a mean_action input (mean-field policies): TryDecide(agentId, ...) feeds each agent the mean of the
// actions the other agents of the behaviour took at the previous decision (MeanActionRecorder; it rolls over on
// Academy.AgentPreStep) and records the agent's own decision; call OnAgentEpisodeBegin(agentId) from
// Agent.OnEpisodeBegin so a restarted agent's earlier action no longer counts. Actions are recorded from the
// first such model on; TryDecide without an agent id feeds zeros to such a model.
using System;
using System.Collections.Generic;
using Unimarl.Core;
using Unity.MLAgents;
using Unity.MLAgents.Actuators;
using Unity.MLAgents.Policies;
using Unity.MLAgents.SideChannels;
using UnityEngine;

namespace Unimarl.Unity
{
    [DisallowMultipleComponent]
    public sealed class PolicyHotSwap : MonoBehaviour
    {
        [Tooltip("Behavior Name of the agents to drive (as in Behavior Parameters, without ?team=).")]
        [SerializeField] string m_BehaviorName = "";
        [Tooltip("Team Id of the agents to drive (Behavior Parameters); -1 accepts models pushed for any team.")]
        [SerializeField] int m_TeamId = -1;
        [Tooltip("Largest model accepted from the trainer, in MiB.")]
        [SerializeField] int m_MaxModelSizeMiB = 64;
        [Tooltip("Seed of the evaluator's sampling (player builds).")]
        [SerializeField] int m_Seed = 0;
        [Tooltip("Use the deterministic (argmax / mean) outputs instead of sampling.")]
        [SerializeField] bool m_Deterministic = false;

        // One channel per id may be registered; components share it.
        static PolicySideChannel s_Channel;
        static int s_Users;

        OnnxPolicy m_Policy;
        MeanActionRecorder m_MeanActions;
        float[] m_MeanAction;
        bool m_WarnedNoAgentId;

        /// <summary>Version of the policy in use, -1 before the first one arrives.</summary>
        public long PolicyVersion { get; private set; }

        void OnEnable()
        {
            PolicyVersion = -1;
            if (s_Channel == null)
            {
                s_Channel = new PolicySideChannel((long)m_MaxModelSizeMiB * 1024 * 1024);
                SideChannelManager.RegisterSideChannel(s_Channel);
            }
            s_Users++;
            s_Channel.PolicyReceived += OnPolicyReceived;
            Academy.Instance.AgentPreStep += OnAgentPreStep;
        }

        void OnDisable()
        {
            if (Academy.IsInitialized) Academy.Instance.AgentPreStep -= OnAgentPreStep;
            s_Channel.PolicyReceived -= OnPolicyReceived;
            if (--s_Users == 0)
            {
                SideChannelManager.UnregisterSideChannel(s_Channel);
                s_Channel = null;
            }
        }

        bool Handles(string behavior)
        {
            int query = behavior.IndexOf('?');
            if ((query < 0 ? behavior : behavior.Substring(0, query)) != m_BehaviorName) return false;
            return m_TeamId < 0 || (query >= 0 && behavior.Substring(query) == "?team=" + m_TeamId);
        }

        void OnAgentPreStep(int academyStepCount)
        {
            if (m_MeanActions != null) m_MeanActions.RollOver();
        }

        void OnPolicyReceived(ReceivedPolicy policy)
        {
            if (!Handles(policy.Behavior)) return;
            try
            {
                var loaded = new OnnxPolicy(policy.Model, m_Seed);
                if (loaded.HasMeanAction && (m_MeanActions == null || m_MeanActions.Size != loaded.MeanActionSize))
                {
                    m_MeanActions = new MeanActionRecorder(loaded.ContinuousSize, loaded.BranchSizes);
                    m_MeanAction = new float[loaded.MeanActionSize];
                }
                m_Policy = loaded;
#if UNITY_EDITOR
                ApplyInEditor(policy);
#endif
            }
            catch (Exception e) when (e is OnnxModelException || e is ArgumentException || e is System.IO.IOException)
            {
                Debug.LogError("[unimarl] cannot load policy " + policy.Behavior + " v" + policy.Version + ": " + e.Message);
                s_Channel.Acknowledge(policy, PolicyRejectReason.LoadFailed, e.Message);
                return;
            }
            PolicyVersion = policy.Version;
            Debug.Log("[unimarl] " + policy.Behavior + " now runs policy v" + policy.Version);
            s_Channel.Acknowledge(policy, PolicyRejectReason.Accepted, "");
        }

#if UNITY_EDITOR
        void ApplyInEditor(ReceivedPolicy policy)
        {
            const string folder = "Assets/UnimarlPolicies";
            if (!UnityEditor.AssetDatabase.IsValidFolder(folder)) UnityEditor.AssetDatabase.CreateFolder("Assets", "UnimarlPolicies");
            string path = folder + "/" + m_BehaviorName + "_v" + policy.Version + ".onnx";
            System.IO.File.WriteAllBytes(System.IO.Path.Combine(Application.dataPath, "..", path), policy.Model);
            UnityEditor.AssetDatabase.ImportAsset(path);
            var asset = UnityEditor.AssetDatabase.LoadAssetAtPath<global::Unity.Sentis.ModelAsset>(path);
            if (asset == null) throw new ArgumentException("Sentis did not import " + path);
            foreach (var agent in FindObjectsByType<Agent>(FindObjectsSortMode.None))
            {
                var parameters = agent.GetComponent<BehaviorParameters>();
                if (parameters != null && parameters.BehaviorName == m_BehaviorName)
                    agent.SetModel(m_BehaviorName, asset);
            }
        }
#endif

        /// <summary>Fills <paramref name="actionsOut"/> from the latest policy; false (actions untouched) before one
        /// arrives. Call from Agent.Heuristic. observations[i] is the agent's i-th sensor, flattened.</summary>
        public bool TryDecide(IList<float[]> observations, float[] actionMask, in ActionBuffers actionsOut)
        {
            if (m_Policy != null && m_Policy.HasMeanAction && !m_WarnedNoAgentId)
            {
                m_WarnedNoAgentId = true;
                Debug.LogWarning("[unimarl] the policy of " + m_BehaviorName + " takes mean_action; call TryDecide with the agent's id " +
                    "(e.g. GetInstanceID()) so the mean of the other agents' actions is fed instead of zeros");
            }
            return Decide(null, observations, actionMask, actionsOut);
        }

        /// <summary>As above for agent <paramref name="agentId"/> (stable per agent, e.g. GetInstanceID()): a policy with
        /// a mean_action input is fed the other agents' mean action, and the decision is recorded for them.</summary>
        public bool TryDecide(int agentId, IList<float[]> observations, float[] actionMask, in ActionBuffers actionsOut)
        {
            return Decide(agentId, observations, actionMask, actionsOut);
        }

        /// <summary>Call from Agent.OnEpisodeBegin: the agent's earlier actions no longer enter mean actions.</summary>
        public void OnAgentEpisodeBegin(int agentId)
        {
            if (m_MeanActions != null) m_MeanActions.Forget(agentId);
        }

        bool Decide(int? agentId, IList<float[]> observations, float[] actionMask, in ActionBuffers actionsOut)
        {
            if (m_Policy == null) return false;
            var continuous = new float[actionsOut.ContinuousActions.Length];
            var discrete = new int[actionsOut.DiscreteActions.Length];
            bool tracked = agentId.HasValue && m_Policy.HasMeanAction;
            if (tracked) m_MeanActions.MeanAction(agentId.Value, m_MeanAction);
            m_Policy.Decide(observations, actionMask, tracked ? m_MeanAction : null, m_Deterministic, continuous, discrete);
            if (tracked) m_MeanActions.Record(agentId.Value, continuous, discrete);
            var c = actionsOut.ContinuousActions;
            for (int i = 0; i < continuous.Length; i++) c[i] = continuous[i];
            var d = actionsOut.DiscreteActions;
            for (int i = 0; i < discrete.Length; i++) d[i] = discrete[i];
            return true;
        }
    }
}
