// Applies policies pushed by the trainer to the agents of one behaviour.
//
// In the Editor, a received model is written under Assets/UnimarlPolicies/, imported as a ModelAsset and set with
// Agent.SetModel on the agents of the behaviour that run models: Inference Only agents, and Default agents when no
// trainer is connected (BehaviorParameters.cs:229-263, GeneratePolicy; 3.0.0 and 4.0.1). Never on Default agents a
// trainer drives, nor on Heuristic Only agents: SetModel ends the agent's episode whenever the model changes
// (Agent.cs:664-681, NotifyAgentDone(DoneReason.Disabled)), which would cut the trainer's episodes and lose the
// step's actions. A model pushed for "Name?team=N" goes to the agents whose Team Id is N only.
// In player builds the ONNX importer is not available, so the model runs on the plug-in's engine-free evaluator:
// the agent's Heuristic calls TryDecide (set Behavior Type to Heuristic Only) with its sensors, named; they are fed
// in ML-Agents' sensor order (SensorOrder). Each model is acknowledged to the trainer: Accepted once loaded
// (and set in the Editor), LoadFailed with the error otherwise, whatever threw. Team Id (-1: any) restricts the
// component to the models pushed for one team, e.g. a self-play opponent team driven inside the game.
//
// ModelAsset is Unity.Sentis' in ML-Agents 3.x (com.unity.sentis) and Unity.InferenceEngine's in 4.x
// (com.unity.ai.inference); the asmdef's versionDefines set UNIMARL_MLAGENTS_4 / UNIMARL_INFERENCE_ENGINE /
// UNIMARL_SENTIS from the installed packages.
//
// Models with a mean_action input (mean-field policies): TryDecide(agentId, groupId, teamId, ...) feeds each agent
// the mean of the actions the other agents of its team and Unity group (the id of its SimpleMultiAgentGroup,
// GetId(); 0 when it has none, then its Team Id alone) took at the previous decision (MeanActionRecorder; it
// rolls over on Academy.AgentPreStep) and records the agent's own decision, so agents of separate areas never mix,
// as in training; call OnAgentEpisodeBegin(agentId) from Agent.OnEpisodeBegin so a restarted agent's earlier
// action no longer counts. Actions are recorded from the first such model on; TryDecide without an agent id
// feeds zeros to such a model.
using System;
using System.Collections.Generic;
using Unimarl.Core;
using Unity.MLAgents;
using Unity.MLAgents.Actuators;
using Unity.MLAgents.Policies;
using Unity.MLAgents.SideChannels;
using UnityEngine;
#if UNITY_EDITOR
#if UNIMARL_MLAGENTS_4 || (UNIMARL_INFERENCE_ENGINE && !UNIMARL_SENTIS)
using ModelAsset = Unity.InferenceEngine.ModelAsset;
#else
using ModelAsset = Unity.Sentis.ModelAsset;
#endif
#endif

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

        /// <summary>Behavior Name of the agents to drive; set before the component is enabled.</summary>
        public string BehaviorName { get { return m_BehaviorName; } set { m_BehaviorName = value; } }
        /// <summary>Team Id of the agents to drive, -1 for any; set before the component is enabled.</summary>
        public int TeamId { get { return m_TeamId; } set { m_TeamId = value; } }

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
            s_Channel.AddHandler(OnPolicyReceived);
            Academy.Instance.AgentPreStep += OnAgentPreStep;
        }

        void OnDisable()
        {
            if (Academy.IsInitialized) Academy.Instance.AgentPreStep -= OnAgentPreStep;
            s_Channel.RemoveHandler(OnPolicyReceived);
            if (--s_Users == 0)
            {
                SideChannelManager.UnregisterSideChannel(s_Channel);
                s_Channel = null;
            }
        }

        bool Handles(string behavior)
        {
            int team;
            if (BaseName(behavior, out team) != m_BehaviorName) return false;
            return m_TeamId < 0 || team == m_TeamId;
        }

        /// <summary>"Name?team=N" -> "Name", N; a name without a team: team -1.</summary>
        static string BaseName(string behavior, out int team)
        {
            team = -1;
            int query = behavior.IndexOf('?');
            if (query < 0) return behavior;
            const string key = "?team=";
            if (string.CompareOrdinal(behavior, query, key, 0, key.Length) != 0 || !int.TryParse(behavior.Substring(query + key.Length), out team))
                team = int.MinValue;  // a query that is not a team id matches no team
            return behavior.Substring(0, query);
        }

        void OnAgentPreStep(int academyStepCount)
        {
            if (m_MeanActions != null) m_MeanActions.RollOver();
        }

        /// <summary>Loads (and in the Editor sets) a received model and acknowledges it; false if this component
        /// does not handle its behaviour.</summary>
        bool OnPolicyReceived(ReceivedPolicy policy)
        {
            if (!Handles(policy.Behavior)) return false;
            OnnxPolicy loaded;
            try
            {
                loaded = new OnnxPolicy(policy.Model, m_Seed);
#if UNITY_EDITOR
                ApplyInEditor(policy);
#endif
            }
            catch (Exception e)
            {
                // Whatever failed (the evaluator, the importer, SetModel), the trainer waits for this answer:
                // ML-Agents' SideChannel.ProcessMessage would log the exception and skip the message
                // (SideChannel.cs:36-51), leaving the trainer without one.
                Debug.LogError("[unimarl] cannot load policy " + policy.Behavior + " v" + policy.Version + ": " + e);
                s_Channel.Acknowledge(policy, PolicyRejectReason.LoadFailed, e.GetType().Name + ": " + e.Message);
                return true;
            }
            if (loaded.HasMeanAction && (m_MeanActions == null || m_MeanActions.Size != loaded.MeanActionSize))
            {
                m_MeanActions = new MeanActionRecorder(loaded.ContinuousSize, loaded.BranchSizes);
                m_MeanAction = new float[loaded.MeanActionSize];
            }
            m_Policy = loaded;
            PolicyVersion = policy.Version;
            Debug.Log("[unimarl] " + policy.Behavior + " now runs policy v" + policy.Version);
            s_Channel.Acknowledge(policy, PolicyRejectReason.Accepted, "");
            return true;
        }

#if UNITY_EDITOR
        /// <summary>Whether the agent runs the models set with SetModel (BehaviorParameters.cs:229-263): Inference
        /// Only, or Default without a connected trainer; not Heuristic Only, not agents under training.</summary>
        static bool RunsModels(BehaviorParameters parameters)
        {
            switch (parameters.BehaviorType)
            {
                case BehaviorType.InferenceOnly: return true;
                case BehaviorType.Default: return !Academy.Instance.IsCommunicatorOn;
                default: return false;
            }
        }

        void ApplyInEditor(ReceivedPolicy policy)
        {
            int team;
            string behavior = BaseName(policy.Behavior, out team);
            var targets = new List<Agent>();
            foreach (var agent in FindObjectsByType<Agent>(FindObjectsSortMode.None))
            {
                var parameters = agent.GetComponent<BehaviorParameters>();
                if (parameters != null && parameters.BehaviorName == behavior && (team == -1 || parameters.TeamId == team) && RunsModels(parameters))
                    targets.Add(agent);
            }
            if (targets.Count == 0) return;  // only TryDecide runs it
            const string folder = "Assets/UnimarlPolicies";
            if (!UnityEditor.AssetDatabase.IsValidFolder(folder)) UnityEditor.AssetDatabase.CreateFolder("Assets", "UnimarlPolicies");
            string path = folder + "/" + behavior + (team == -1 ? "" : "_team" + team) + "_v" + policy.Version + ".onnx";
            System.IO.File.WriteAllBytes(System.IO.Path.Combine(Application.dataPath, "..", path), policy.Model);
            UnityEditor.AssetDatabase.ImportAsset(path);
            var asset = UnityEditor.AssetDatabase.LoadAssetAtPath<ModelAsset>(path);
            if (asset == null) throw new InvalidOperationException("the inference package did not import " + path + " as a ModelAsset");
            for (int i = 0; i < targets.Count; i++)
            {
                var parameters = targets[i].GetComponent<BehaviorParameters>();
                try
                {
                    targets[i].SetModel(parameters.BehaviorName, asset, parameters.InferenceDevice);
                }
                catch (Exception e)
                {
                    throw new InvalidOperationException("Agent.SetModel failed on " + targets[i].name + " (" + i + " of " + targets.Count +
                        " agents already run " + path + "): " + e.Message, e);
                }
            }
        }
#endif

        /// <summary>Fills <paramref name="actionsOut"/> from the latest policy; false (actions untouched) before one
        /// arrives. Call from Agent.Heuristic with every sensor of the agent, named as the sensor (any order): the
        /// model is fed them in ML-Agents' order (SensorOrder).</summary>
        public bool TryDecide(IList<SensorObservation> observations, float[] actionMask, in ActionBuffers actionsOut)
        {
            if (m_Policy != null && m_Policy.HasMeanAction && !m_WarnedNoAgentId)
            {
                m_WarnedNoAgentId = true;
                Debug.LogWarning("[unimarl] the policy of " + m_BehaviorName + " takes mean_action; call TryDecide with the agent's id, " +
                    "group id and Team Id so the mean of the other agents' actions is fed instead of zeros");
            }
            return Decide(null, 0, observations, actionMask, actionsOut);
        }

        /// <summary>As above for agent <paramref name="agentId"/> (stable per agent, e.g. GetInstanceID()) of the
        /// SimpleMultiAgentGroup <paramref name="groupId"/> (its GetId(); 0 when the agent has none) and Team Id
        /// <paramref name="teamId"/> (Behavior Parameters): a policy with a mean_action input is fed the mean action
        /// of the other agents of that team and group, and the decision is recorded for them.</summary>
        public bool TryDecide(int agentId, int groupId, int teamId, IList<SensorObservation> observations, float[] actionMask, in ActionBuffers actionsOut)
        {
            return Decide(agentId, MeanActionRecorder.Segment(groupId, teamId), observations, actionMask, actionsOut);
        }

        /// <summary>Call from Agent.OnEpisodeBegin: the agent's earlier actions no longer enter mean actions.</summary>
        public void OnAgentEpisodeBegin(int agentId)
        {
            if (m_MeanActions != null) m_MeanActions.Forget(agentId);
        }

        bool Decide(int? agentId, long segment, IList<SensorObservation> observations, float[] actionMask, in ActionBuffers actionsOut)
        {
            if (m_Policy == null) return false;
            var ordered = SensorOrder.Sorted(observations);
            var continuous = new float[actionsOut.ContinuousActions.Length];
            var discrete = new int[actionsOut.DiscreteActions.Length];
            bool tracked = agentId.HasValue && m_Policy.HasMeanAction;
            if (tracked) m_MeanActions.MeanAction(agentId.Value, segment, m_MeanAction);
            m_Policy.Decide(ordered, actionMask, tracked ? m_MeanAction : null, m_Deterministic, continuous, discrete);
            if (tracked) m_MeanActions.Record(agentId.Value, segment, continuous, discrete);
            var c = actionsOut.ContinuousActions;
            for (int i = 0; i < continuous.Length; i++) c[i] = continuous[i];
            var d = actionsOut.DiscreteActions;
            for (int i = 0; i < discrete.Length; i++) d[i] = discrete[i];
            return true;
        }
    }
}
