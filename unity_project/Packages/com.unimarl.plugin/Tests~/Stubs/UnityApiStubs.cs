// Stand-ins for the com.unity.ml-agents API the plug-in, the example agents and the scene builder use. Public
// signatures follow the package's C# sources (3.0.0 and 4.0.1; tests/unity/test_api_stubs.py compares them), and
// the behaviour the tests rely on is modelled on those sources, cited per rule (file:line, 3.0.0; 4.0.1 has the
// same code). Members that are not package API are internal or live in Unimarl.Stubs.
using System;
using System.Collections.Generic;
using Unimarl.Stubs;
#if STUB_INFERENCE_ENGINE
using ModelAsset = Unity.InferenceEngine.ModelAsset;
#else
using ModelAsset = Unity.Sentis.ModelAsset;
#endif

// The world driver (Tests~/WorldTestDriver.cs) sets up and reads what the engine and the trainer would.
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("world")]

namespace Unimarl.Stubs
{
    /// <summary>One AgentInfo handed to an agent's policy (IPolicy.RequestDecision), as the communicator would see
    /// it; Policy says which policy got it (only Remote reaches the trainer).</summary>
    public sealed class SentInfo
    {
        public int AcademyStep, AgentId, EpisodeId;
        public string Policy, Behavior;
        public bool Done, MaxStepReached;
        public float Reward, GroupReward;
        /// <summary>AgentInfo.groupId: the agent's SimpleMultiAgentGroup id, 0 without one.</summary>
        public int GroupId;
        public List<string> SensorNames = new List<string>();
        public List<float[]> Observations = new List<float[]>();
        /// <summary>1 = allowed, per action of every branch (the mask WriteDiscreteActionMask wrote).</summary>
        public float[] Mask = new float[0];
    }
}

namespace Unity.MLAgents.Policies
{
    using Unity.MLAgents.Actuators;

    public enum InferenceDevice
    {
        Default = 0,
        ComputeShader = 1,
        Burst = 2,
        PixelShader = 3,
    }

    public enum BehaviorType
    {
        Default,
        HeuristicOnly,
        InferenceOnly,
    }

    public class BrainParameters
    {
        public int VectorObservationSize = 1;
        public int NumStackedVectorObservations = 1;
        public ActionSpec ActionSpec { get; set; } = new ActionSpec(0, new[] { 2 });
    }

    public class BehaviorParameters : UnityEngine.MonoBehaviour
    {
        BrainParameters m_BrainParameters = new BrainParameters();
        public BrainParameters BrainParameters
        {
            get { return m_BrainParameters; }
            internal set { m_BrainParameters = value; }
        }
        public ModelAsset Model { get; set; }
        public InferenceDevice InferenceDevice { get; set; }
        public BehaviorType BehaviorType { get; set; }
        public string BehaviorName { get; set; } = "My Behavior";
        public int TeamId;
        public string FullyQualifiedBehaviorName
        {
            get { return BehaviorName + "?team=" + TeamId; }
        }

        /// <summary>BehaviorParameters.cs:229-263 (GeneratePolicy): Heuristic Only -> heuristic; Inference Only ->
        /// the model (heuristic without one); Default -> the trainer when one is connected, else the model, else
        /// the heuristic. Creating an inference policy loads the model and throws if it cannot.</summary>
        internal string GeneratePolicy()
        {
            switch (BehaviorType)
            {
                case BehaviorType.HeuristicOnly: return "Heuristic";
                case BehaviorType.InferenceOnly:
                    if (Model == null) return "Heuristic";
                    StubInference.Load(Model);
                    return "Inference";
                default:
                    if (Academy.Instance.IsCommunicatorOn) return "Remote";
                    if (Model != null) { StubInference.Load(Model); return "Inference"; }
                    return "Heuristic";
            }
        }
    }
}

namespace Unity.MLAgents
{
    using Unity.MLAgents.Actuators;
    using Unity.MLAgents.Policies;
    using Unity.MLAgents.Sensors;

    [UnityEngine.RequireComponent(typeof(BehaviorParameters))]
    public class Agent : UnityEngine.MonoBehaviour
    {
        enum DoneReason { DoneCalled, MaxStepReached, Disabled }

        static int s_EpisodeIds;
        public int MaxStep;

        bool m_Initialized, m_RequestDecision, m_RequestAction, m_Done, m_DecisionRequested;
        string m_Brain;
        BehaviorParameters m_PolicyFactory;
        float m_Reward, m_GroupReward;
        int m_StepCount, m_EpisodeId;
        /// Agent.cs:354-359: the MultiAgentGroup id (0: no group), and the event a group unregisters on.
        int m_GroupId;
        internal event Action<Agent> OnAgentDisabled;
        ActionBuffers m_Stored, m_HeuristicActions;
        internal List<ISensor> sensors = new List<ISensor>();
        internal VectorSensor collectObservationsSensor;
        /// <summary>Calls of SetModel that changed the model (not package API).</summary>
        internal int ModelChanges;

        public int StepCount { get { return m_StepCount; } }
        public int CompletedEpisodes { get; private set; }

        protected internal virtual void Awake() { }

        protected virtual void OnEnable() { LazyInitialize(); }

        // Agent.cs:480-533.
        public void LazyInitialize()
        {
            if (m_Initialized) return;
            m_Initialized = true;
            m_EpisodeId = ++s_EpisodeIds;
            m_PolicyFactory = GetComponent<BehaviorParameters>();
            var academy = Academy.Instance;
            academy.AgentIncrementStep += AgentIncrementStep;
            academy.AgentSendState += SendInfo;
            academy.DecideAction += DecideAction;
            academy.AgentAct += AgentStep;
            academy.AgentForceReset += _AgentReset;
            var spec = m_PolicyFactory.BrainParameters.ActionSpec;
            m_Stored = new ActionBuffers(new float[spec.NumContinuousActions], new int[spec.NumDiscreteActions]);
            m_HeuristicActions = new ActionBuffers(new float[spec.NumContinuousActions], new int[spec.NumDiscreteActions]);
            m_Brain = m_PolicyFactory.GeneratePolicy();
            Initialize();
            InitializeSensors();
            if (academy.TotalStepCount != 0) OnEpisodeBegin();
        }

        // Agent.cs:574-594.
        protected virtual void OnDisable()
        {
            if (Academy.IsInitialized)
            {
                var academy = Academy.Instance;
                academy.AgentIncrementStep -= AgentIncrementStep;
                academy.AgentSendState -= SendInfo;
                academy.DecideAction -= DecideAction;
                academy.AgentAct -= AgentStep;
                academy.AgentForceReset -= _AgentReset;
                NotifyAgentDone(DoneReason.Disabled);
            }
            if (OnAgentDisabled != null) OnAgentDisabled(this);  // Agent.cs:592: its group unregisters it
            m_Initialized = false;
        }

        // Agent.cs:1416-1436.
        internal void SetMultiAgentGroup(IMultiAgentGroup multiAgentGroup)
        {
            if (multiAgentGroup == null)
            {
                m_GroupId = 0;
                return;
            }
            var newGroupId = multiAgentGroup.GetId();
            if (m_GroupId != 0 && m_GroupId != newGroupId)
                throw new InvalidOperationException("Agent is already registered with a group. Unregister it first.");
            m_GroupId = newGroupId;
        }

        // Agent.cs:596-644: the terminal info goes to the policy at once; requests are dropped.
        void NotifyAgentDone(DoneReason doneReason)
        {
            if (m_Done) return;
            m_Done = true;
            UpdateSensors();
            CollectObservations(collectObservationsSensor);
            RequestDecisionOfBrain(true, doneReason == DoneReason.MaxStepReached);
            foreach (var sensor in sensors) sensor.Reset();
            if (doneReason != DoneReason.Disabled) CompletedEpisodes++;
            m_Reward = 0f;
            m_GroupReward = 0f;
            m_RequestAction = false;
            m_RequestDecision = false;
        }

        // Agent.cs:664-681: a changed model ends the episode (DoneReason.Disabled), then the policy is rebuilt.
        public void SetModel(
            string behaviorName,
            ModelAsset model,
            InferenceDevice inferenceDevice = InferenceDevice.Default)
        {
            if (behaviorName == m_PolicyFactory.BehaviorName && model == m_PolicyFactory.Model && inferenceDevice == m_PolicyFactory.InferenceDevice)
                return;
            NotifyAgentDone(DoneReason.Disabled);
            ModelChanges++;
            m_PolicyFactory.Model = model;
            m_PolicyFactory.InferenceDevice = inferenceDevice;
            m_PolicyFactory.BehaviorName = behaviorName;
            if (m_Initialized) m_Brain = m_PolicyFactory.GeneratePolicy();
        }

        public void AddReward(float increment) { m_Reward += increment; }

        internal void AddGroupReward(float increment) { m_GroupReward += increment; }

        // Agent.cs:806-835.
        public void EndEpisode() { NotifyAgentDone(DoneReason.DoneCalled); _AgentReset(); }

        public void EpisodeInterrupted() { NotifyAgentDone(DoneReason.MaxStepReached); _AgentReset(); }

        // Agent.cs:855-887.
        public void RequestDecision() { m_RequestDecision = true; RequestAction(); }

        public void RequestAction() { m_RequestAction = true; }

        public virtual void Initialize() { }
        public virtual void Heuristic(in ActionBuffers actionsOut) { }
        public virtual void CollectObservations(VectorSensor sensor) { }
        public virtual void WriteDiscreteActionMask(IDiscreteActionMask actionMask) { }
        public virtual void OnActionReceived(ActionBuffers actions) { }
        public virtual void OnEpisodeBegin() { }

        // Agent.cs:984-1036: sensor components' sensors, the CollectObservations sensor when the vector size is
        // positive, sorted by name with InvariantCulture (Sensors/ISensor.cs:133-137).
        void InitializeSensors()
        {
            sensors = new List<ISensor>();
            foreach (var component in GetComponents<SensorComponent>()) sensors.AddRange(component.CreateSensors());
            collectObservationsSensor = null;
            if (m_PolicyFactory.BrainParameters.VectorObservationSize > 0)
            {
                collectObservationsSensor = new VectorSensor(m_PolicyFactory.BrainParameters.VectorObservationSize);
                sensors.Add(collectObservationsSensor);
            }
            sensors.Sort((x, y) => string.Compare(x.GetName(), y.GetName(), StringComparison.InvariantCulture));
        }

        void UpdateSensors() { foreach (var sensor in sensors) sensor.Update(); }

        // Agent.cs:1344-1352.
        void _AgentReset()
        {
            m_StepCount = 0;
            OnEpisodeBegin();
        }

        // Agent.cs:1372-1382.
        void SendInfo()
        {
            if (m_RequestDecision)
            {
                SendInfoToBrain();
                m_Reward = 0f;
                m_GroupReward = 0f;
                m_RequestDecision = false;
            }
        }

        // Agent.cs:1092-1148.
        void SendInfoToBrain()
        {
            if (m_Brain == null) return;
            UpdateSensors();
            CollectObservations(collectObservationsSensor);
            m_Mask = new Mask(m_PolicyFactory.BrainParameters.ActionSpec.BranchSizes);
            WriteDiscreteActionMask(m_Mask);
            m_Done = false;
            RequestDecisionOfBrain(false, false);
        }

        Mask m_Mask;

        sealed class Mask : IDiscreteActionMask
        {
            readonly int[] m_Offsets;
            internal readonly float[] Allowed;

            internal Mask(int[] branches)
            {
                m_Offsets = new int[branches.Length];
                int total = 0;
                for (int b = 0; b < branches.Length; b++) { m_Offsets[b] = total; total += branches[b]; }
                Allowed = new float[total];
                for (int i = 0; i < total; i++) Allowed[i] = 1f;
            }

            public void SetActionEnabled(int branch, int actionIndex, bool isEnabled) { Allowed[m_Offsets[branch] + actionIndex] = isEnabled ? 1f : 0f; }
        }

        void RequestDecisionOfBrain(bool done, bool maxStepReached)
        {
            if (m_Brain == null) return;
            var info = new SentInfo
            {
                Mask = done || m_Mask == null ? new float[0] : m_Mask.Allowed,
                AcademyStep = Academy.Instance.StepInProgress, AgentId = GetInstanceID(), EpisodeId = m_EpisodeId,
                Policy = m_Brain, Behavior = m_PolicyFactory.FullyQualifiedBehaviorName, Done = done,
                MaxStepReached = maxStepReached, Reward = m_Reward, GroupReward = m_GroupReward,
                GroupId = m_GroupId,  // Agent.cs:608 (terminal), 1133 (decision)
            };
            foreach (var sensor in sensors)
            {
                info.SensorNames.Add(sensor.GetName());
                var vector = sensor as VectorSensor;
                info.Observations.Add(vector == null ? new float[0] : vector.Written());
            }
            Academy.Instance.Sent.Add(info);
            // HeuristicPolicy.cs:36-41: remember the request; DecideAction runs the heuristic only if not done.
            m_DecisionRequested = true;
        }

        void AgentIncrementStep() { m_StepCount += 1; }

        // Agent.cs:1390-1403.
        void AgentStep()
        {
            if (m_RequestAction && m_Brain != null)
            {
                m_RequestAction = false;
                OnActionReceived(m_Stored);
            }
            if (m_StepCount >= MaxStep && MaxStep > 0)
            {
                NotifyAgentDone(DoneReason.MaxStepReached);
                _AgentReset();
            }
        }

        // Agent.cs:1405-1414 with HeuristicPolicy.cs:44-53 (heuristic on a pending, not-done request) and
        // RemotePolicy (the trainer's actions: zeros here).
        void DecideAction()
        {
            if (m_Brain == "Heuristic" && m_DecisionRequested && !m_Done)
            {
                Array.Clear(m_HeuristicActions.ContinuousActions.Array, 0, m_HeuristicActions.ContinuousActions.Length);
                Array.Clear(m_HeuristicActions.DiscreteActions.Array, 0, m_HeuristicActions.DiscreteActions.Length);
                Heuristic(in m_HeuristicActions);
            }
            m_DecisionRequested = false;
            var source = m_Brain == "Heuristic" ? m_HeuristicActions : new ActionBuffers(new float[m_Stored.ContinuousActions.Length], new int[m_Stored.DiscreteActions.Length]);
            Array.Copy(source.ContinuousActions.Array, m_Stored.ContinuousActions.Array, m_Stored.ContinuousActions.Length);
            Array.Copy(source.DiscreteActions.Array, m_Stored.DiscreteActions.Array, m_Stored.DiscreteActions.Length);
        }
    }

    [UnityEngine.RequireComponent(typeof(Agent))]
    public class DecisionRequester : UnityEngine.MonoBehaviour
    {
        public int DecisionPeriod = 5;
        public int DecisionStep = 0;
        public bool TakeActionsBetweenDecisions = true;
        Agent m_Agent;

        // DecisionRequester.cs:65-71, 97-113: requests on AgentPreStep, subscribed in Awake.
        internal void Awake()
        {
            m_Agent = gameObject.GetComponent<Agent>();
            Academy.Instance.AgentPreStep += MakeRequests;
        }

        void OnDestroy()
        {
            if (Academy.IsInitialized) Academy.Instance.AgentPreStep -= MakeRequests;
        }

        void MakeRequests(int academyStepCount)
        {
            if (academyStepCount % DecisionPeriod == DecisionStep) m_Agent.RequestDecision();
            if (TakeActionsBetweenDecisions) m_Agent.RequestAction();
        }
    }

    public class Academy : IDisposable
    {
        static Academy s_Instance;
        bool m_HadFirstReset;

        public static Academy Instance { get { return s_Instance ?? (s_Instance = new Academy()); } }
        public static bool IsInitialized { get { return s_Instance != null; } }
        /// <summary>Whether a trainer is connected; the tests set it (not settable in the package).</summary>
        public bool IsCommunicatorOn { get; internal set; }
        public int StepCount { get; private set; }
        public int TotalStepCount { get; private set; }
        public StatsRecorder StatsRecorder { get; } = new StatsRecorder();

        public event Action<int> AgentPreStep;
        internal event Action AgentIncrementStep;
        internal event Action AgentSendState;
        internal event Action DecideAction;
        internal event Action AgentAct;
        internal event Action AgentForceReset;

        /// <summary>The step count AgentPreStep got in the latest EnvironmentStep (not package API).</summary>
        internal int StepInProgress;
        /// <summary>Every AgentInfo handed to a policy, in order (not package API).</summary>
        internal readonly List<SentInfo> Sent = new List<SentInfo>();

        // Academy.cs:568-604 (4.0.1: 569-605): the first step resets every agent, then AgentPreStep (decision
        // requesters, game logic), step counters, AgentSendState (observations of agents with a pending
        // decision), DecideAction, AgentAct (OnActionReceived).
        public void EnvironmentStep()
        {
            if (!m_HadFirstReset)
            {
                StepCount = 0;
                if (AgentForceReset != null) AgentForceReset();
                m_HadFirstReset = true;
            }
            StepInProgress = StepCount;
            if (AgentPreStep != null) AgentPreStep(StepCount);
            StepCount += 1;
            TotalStepCount += 1;
            if (AgentIncrementStep != null) AgentIncrementStep();
            if (AgentSendState != null) AgentSendState();
            if (DecideAction != null) DecideAction();
            if (AgentAct != null) AgentAct();
        }

        public void Dispose() { s_Instance = null; }
    }

    public enum StatAggregationMethod
    {
        Average = 0,
        MostRecent = 1,
        Sum = 2,
        Histogram = 3
    }

    public sealed class StatsRecorder
    {
        internal readonly List<string> Recorded = new List<string>();
        public void Add(
            string key,
            float value,
            StatAggregationMethod aggregationMethod = StatAggregationMethod.Average)
        {
            Recorded.Add(key + "=" + value.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
        }
    }

    public interface IMultiAgentGroup
    {
        int GetId();
        void RegisterAgent(Agent agent);
        void UnregisterAgent(Agent agent);
    }

    public class SimpleMultiAgentGroup : IMultiAgentGroup, IDisposable
    {
        // MultiAgentGroupIdCounter.cs:5-12 and SimpleMultiAgentGroup.cs:12: ids 1, 2, ... in creation order.
        static int s_Counter;
        readonly int m_Id = System.Threading.Interlocked.Increment(ref s_Counter);
        readonly List<Agent> m_Agents = new List<Agent>();

        // SimpleMultiAgentGroup.cs:18-52: registering sets the agent's group id (Agent.SetMultiAgentGroup) and
        // unregisters it when it is disabled; Dispose unregisters everyone.
        public virtual void Dispose() { while (m_Agents.Count > 0) UnregisterAgent(m_Agents[0]); }

        public virtual void RegisterAgent(Agent agent)
        {
            if (m_Agents.Contains(agent)) return;
            agent.SetMultiAgentGroup(this);
            m_Agents.Add(agent);
            agent.OnAgentDisabled += UnregisterAgent;
        }

        public virtual void UnregisterAgent(Agent agent)
        {
            if (!m_Agents.Contains(agent)) return;
            agent.SetMultiAgentGroup(null);
            m_Agents.Remove(agent);
            agent.OnAgentDisabled -= UnregisterAgent;
        }

        public int GetId() { return m_Id; }

        // SimpleMultiAgentGroup.cs:81-143: group rewards and episode ends go to every registered agent.
        public void AddGroupReward(float reward) { foreach (var agent in m_Agents) agent.AddGroupReward(reward); }
        public void EndGroupEpisode() { foreach (var agent in m_Agents.ToArray()) agent.EndEpisode(); }
        public void GroupEpisodeInterrupted() { foreach (var agent in m_Agents.ToArray()) agent.EpisodeInterrupted(); }
    }
}
