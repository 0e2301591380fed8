// Stand-ins for com.unity.ml-agents' actuator, sensor and side-channel types the plug-in, the example agents and
// the scene builder use (see UnityApiStubs.cs for the rules these stand-ins follow; tests/unity/test_api_stubs.py
// checks their signatures against the package's sources).
using System;
using System.Collections.Generic;

namespace Unity.MLAgents.Actuators
{
    public readonly struct ActionSegment<T> where T : struct
    {
        public readonly int Offset;
        public readonly int Length;
        public ActionSegment(T[] actionArray) : this(actionArray, 0, actionArray.Length) { }
        public ActionSegment(T[] actionArray, int offset, int length) { Array = actionArray; Offset = offset; Length = length; }
        public T[] Array { get; }
        public T this[int index]
        {
            get { if (index < 0 || index >= Length) throw new IndexOutOfRangeException("index " + index + " of " + Length); return Array[Offset + index]; }
            set { if (index < 0 || index >= Length) throw new IndexOutOfRangeException("index " + index + " of " + Length); Array[Offset + index] = value; }
        }
    }

    public interface IDiscreteActionMask
    {
        void SetActionEnabled(int branch, int actionIndex, bool isEnabled);
    }

    public readonly struct ActionBuffers
    {
        public ActionSegment<float> ContinuousActions { get; }
        public ActionSegment<int> DiscreteActions { get; }
        public ActionBuffers(float[] continuousActions, int[] discreteActions)
        {
            ContinuousActions = new ActionSegment<float>(continuousActions ?? new float[0]);
            DiscreteActions = new ActionSegment<int>(discreteActions ?? new int[0]);
        }
    }

    public struct ActionSpec
    {
        public int[] BranchSizes;
        public int NumContinuousActions { get; set; }
        public int NumDiscreteActions { get { return BranchSizes == null ? 0 : BranchSizes.Length; } }
        public static ActionSpec MakeContinuous(int numActions) { return new ActionSpec(numActions, null); }
        public static ActionSpec MakeDiscrete(params int[] branchSizes) { return new ActionSpec(0, branchSizes); }
        public ActionSpec(int numContinuousActions = 0, int[] discreteBranchSizes = null)
        {
            BranchSizes = discreteBranchSizes ?? new int[0];
            NumContinuousActions = numContinuousActions;
        }
    }
}

namespace Unity.MLAgents.Sensors
{
    public enum ObservationType { Default = 0, GoalSignal = 1 }

    public interface ISensor
    {
        string GetName();
        void Update();
        void Reset();
    }

    public class VectorSensor : ISensor
    {
        readonly List<float> m_Observations = new List<float>();
        readonly string m_Name;
        readonly int m_Size;

        // VectorSensor.cs:24-37: the default name is "VectorSensor_size{N}".
        public VectorSensor(int observationSize, string name = null, ObservationType observationType = ObservationType.Default)
        {
            m_Size = observationSize;
            m_Name = name ?? "VectorSensor_size" + observationSize + (observationType != ObservationType.Default ? "_" + observationType : "");
        }

        public string GetName() { return m_Name; }
        public void Update() { m_Observations.Clear(); }
        public void Reset() { m_Observations.Clear(); }
        public void AddObservation(float observation) { m_Observations.Add(observation); }
        public void AddObservation(IList<float> observation) { for (var i = 0; i < observation.Count; i++) m_Observations.Add(observation[i]); }

        /// <summary>What Write puts on the wire: truncated or zero-padded to the size (VectorSensor.cs:41-67).</summary>
        internal float[] Written()
        {
            var values = new float[m_Size];
            for (int i = 0; i < Math.Min(m_Size, m_Observations.Count); i++) values[i] = m_Observations[i];
            return values;
        }
    }

    public abstract class SensorComponent : UnityEngine.MonoBehaviour
    {
        public abstract ISensor[] CreateSensors();
    }

    public class VectorSensorComponent : SensorComponent
    {
        VectorSensor m_Sensor;
        public string SensorName { get; set; } = "VectorSensor";  // VectorSensorComponent.cs:21 default
        public int ObservationSize { get; set; }
        public VectorSensor GetSensor() { return m_Sensor; }
        public override ISensor[] CreateSensors()
        {
            m_Sensor = new VectorSensor(ObservationSize, SensorName);
            return new ISensor[] { m_Sensor };
        }
    }
}

namespace Unity.MLAgents.SideChannels
{
    public class IncomingMessage : IDisposable
    {
        readonly byte[] m_Data;
        public IncomingMessage(byte[] data) { m_Data = data; }
        public byte[] GetRawBytes() { return m_Data; }
        public void Dispose() { }
    }

    public class OutgoingMessage : IDisposable
    {
        internal byte[] Data = new byte[0];
        public void SetRawBytes(byte[] data) { Data = data; }
        public void Dispose() { }
    }

    public abstract class SideChannel
    {
        internal readonly List<byte[]> MessageQueue = new List<byte[]>();

        public Guid ChannelId { get; protected set; }

        // SideChannel.cs:36-51: any exception from OnMessageReceived is logged and the message skipped.
        internal void ProcessMessage(byte[] msg)
        {
            try
            {
                using (var incomingMsg = new IncomingMessage(msg)) OnMessageReceived(incomingMsg);
            }
            catch (Exception ex)
            {
                UnityEngine.Debug.LogError("Error processing SideChannel message: " + ex + ".\nThe message will be skipped.");
            }
        }

        protected abstract void OnMessageReceived(IncomingMessage msg);

        protected void QueueMessageToSend(OutgoingMessage msg) { MessageQueue.Add(msg.Data); }
    }

    public static class SideChannelManager
    {
        internal static readonly Dictionary<Guid, SideChannel> Registered = new Dictionary<Guid, SideChannel>();

        public static void RegisterSideChannel(SideChannel sideChannel)
        {
            if (Registered.ContainsKey(sideChannel.ChannelId))
                throw new ArgumentException("A side channel with id " + sideChannel.ChannelId + " is already registered.");
            Registered.Add(sideChannel.ChannelId, sideChannel);
        }

        public static void UnregisterSideChannel(SideChannel sideChannel) { Registered.Remove(sideChannel.ChannelId); }
    }
}
