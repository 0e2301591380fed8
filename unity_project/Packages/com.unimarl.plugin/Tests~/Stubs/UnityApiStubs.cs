// Compile-only stand-ins for the Unity / Sentis / ML-Agents API surface the plug-in's glue and the example agents
// (unity_project/Assets/Unimarl/Examples) use (signatures as in the public docs of Unity 6, com.unity.sentis 2.1
// and com.unity.ml-agents 3.0.0). They let the glue be compiled
// outside Unity so a typo or a wrong signature fails the build; they do nothing at run time.
using System;
using System.Collections.Generic;

namespace UnityEngine
{
    public class Object
    {
        public string name { get; set; }
        public int GetInstanceID() { return 0; }
        public static T[] FindObjectsByType<T>(FindObjectsSortMode sortMode) where T : Object { return new T[0]; }
        public static void Destroy(Object obj) { }
    }

    public enum FindObjectsSortMode { None = 0, InstanceID = 1 }

    public class Component : Object
    {
        public T GetComponent<T>() { return default(T); }
        public GameObject gameObject { get { return null; } }
        public Transform transform { get { return null; } }
    }

    public class Transform : Component
    {
        public Vector3 localPosition { get; set; }
    }

    public class GameObject : Object
    {
        public void SetActive(bool value) { }
    }

    public struct Vector2 : IEquatable<Vector2>
    {
        public float x, y;
        public Vector2(float x, float y) { this.x = x; this.y = y; }
        public static Vector2 zero { get { return new Vector2(0f, 0f); } }
        public static Vector2 right { get { return new Vector2(1f, 0f); } }
        public static Vector2 left { get { return new Vector2(-1f, 0f); } }
        public static Vector2 up { get { return new Vector2(0f, 1f); } }
        public static Vector2 down { get { return new Vector2(0f, -1f); } }
        public static float Distance(Vector2 a, Vector2 b) { return 0f; }
        public static Vector2 operator +(Vector2 a, Vector2 b) { return a; }
        public static Vector2 operator -(Vector2 a, Vector2 b) { return a; }
        public static Vector2 operator *(Vector2 a, float d) { return a; }
        public bool Equals(Vector2 other) { return x == other.x && y == other.y; }
    }

    public struct Vector2Int : IEquatable<Vector2Int>
    {
        public int x { get; set; }
        public int y { get; set; }
        public Vector2Int(int x, int y) { this.x = x; this.y = y; }
        public static Vector2Int operator +(Vector2Int a, Vector2Int b) { return a; }
        public bool Equals(Vector2Int other) { return x == other.x && y == other.y; }
    }

    public struct Vector3
    {
        public float x, y, z;
        public Vector3(float x, float y, float z) { this.x = x; this.y = y; this.z = z; }
    }

    public static class Mathf
    {
        public static float Clamp(float value, float min, float max) { return value; }
        public static int Clamp(int value, int min, int max) { return value; }
        public static float Min(float a, float b) { return a; }
        public static int Max(int a, int b) { return a; }
    }
    public class Behaviour : Component { public bool enabled { get; set; } }
    public class MonoBehaviour : Behaviour { }
    public class ScriptableObject : Object { }

    public static class Debug
    {
        public static void Log(object message) { }
        public static void LogWarning(object message) { }
        public static void LogError(object message) { }
    }

    public static class Application
    {
        public static string dataPath { get { return ""; } }
    }

    [AttributeUsage(AttributeTargets.Field)] public sealed class SerializeField : Attribute { }
    [AttributeUsage(AttributeTargets.Field)] public sealed class TooltipAttribute : Attribute { public TooltipAttribute(string tooltip) { } }
    [AttributeUsage(AttributeTargets.Class)] public sealed class DisallowMultipleComponent : Attribute { }
}

namespace UnityEditor
{
    public static class AssetDatabase
    {
        public static void ImportAsset(string path) { }
        public static T LoadAssetAtPath<T>(string assetPath) where T : UnityEngine.Object { return null; }
        public static bool IsValidFolder(string path) { return false; }
        public static string CreateFolder(string parentFolder, string newFolderName) { return ""; }
    }
}

namespace Unity.Sentis
{
    public class ModelAsset : UnityEngine.ScriptableObject { }
}

namespace Unity.MLAgents.Actuators
{
    public struct ActionSegment<T> where T : struct
    {
        public int Length { get { return 0; } }
        public T this[int index] { get { return default(T); } set { } }
    }

    public interface IDiscreteActionMask
    {
        void SetActionEnabled(int branch, int actionIndex, bool isEnabled);
    }

    public readonly struct ActionBuffers
    {
        public ActionSegment<float> ContinuousActions { get { return default(ActionSegment<float>); } }
        public ActionSegment<int> DiscreteActions { get { return default(ActionSegment<int>); } }
    }
}

namespace Unity.MLAgents.Sensors
{
    public class VectorSensor
    {
        public void AddObservation(float observation) { }
        public void AddObservation(IList<float> observation) { }
    }

    public interface ISensor { }

    public abstract class SensorComponent : UnityEngine.MonoBehaviour
    {
        public abstract ISensor[] CreateSensors();
    }

    public class VectorSensorComponent : SensorComponent
    {
        public string SensorName { get; set; }
        public int ObservationSize { get; set; }
        public VectorSensor GetSensor() { return null; }
        public override ISensor[] CreateSensors() { return new ISensor[0]; }
    }
}

namespace Unity.MLAgents.Policies
{
    public enum InferenceDevice { Default = 0, GPU = 1, Burst = 2, CPU = 3 }
    public enum BehaviorType { Default = 0, HeuristicOnly = 1, InferenceOnly = 2 }

    public class BehaviorParameters : UnityEngine.MonoBehaviour
    {
        public string BehaviorName { get; set; }
        public string FullyQualifiedBehaviorName { get { return ""; } }
        public BehaviorType BehaviorType { get; set; }
        public Unity.Sentis.ModelAsset Model { get; set; }
    }
}

namespace Unity.MLAgents
{
    using Unity.MLAgents.Actuators;
    using Unity.MLAgents.Policies;
    using Unity.MLAgents.Sensors;

    public class Agent : UnityEngine.MonoBehaviour
    {
        public void SetModel(string behaviorName, Unity.Sentis.ModelAsset model, InferenceDevice inferenceDevice = InferenceDevice.Default) { }
        public virtual void OnEpisodeBegin() { }
        public virtual void CollectObservations(VectorSensor sensor) { }
        public virtual void WriteDiscreteActionMask(IDiscreteActionMask actionMask) { }
        public virtual void OnActionReceived(ActionBuffers actions) { }
        public virtual void Heuristic(in ActionBuffers actionsOut) { }
        public void AddReward(float increment) { }
        public void EndEpisode() { }
        public void EpisodeInterrupted() { }
    }

    public class Academy : IDisposable
    {
        public static Academy Instance { get { return null; } }
        public static bool IsInitialized { get { return false; } }
        public event Action<int> AgentPreStep { add { } remove { } }
        public StatsRecorder StatsRecorder { get { return null; } }
        public void Dispose() { }
    }

    public enum StatAggregationMethod { Average = 0, MostRecent = 1, Sum = 2, Histogram = 3 }

    public sealed class StatsRecorder
    {
        public void Add(string key, float value, StatAggregationMethod aggregationMethod = StatAggregationMethod.Average) { }
    }

    public class SimpleMultiAgentGroup : IDisposable
    {
        public void RegisterAgent(Agent agent) { }
        public void UnregisterAgent(Agent agent) { }
        public void AddGroupReward(float reward) { }
        public void GroupEpisodeInterrupted() { }
        public void EndGroupEpisode() { }
        public virtual void Dispose() { }
    }
}

namespace Unity.MLAgents.SideChannels
{
    public class IncomingMessage
    {
        public byte[] GetRawBytes() { return new byte[0]; }
    }

    public class OutgoingMessage : IDisposable
    {
        public void SetRawBytes(byte[] data) { }
        public void Dispose() { }
    }

    public abstract class SideChannel
    {
        public Guid ChannelId { get; protected set; }
        protected abstract void OnMessageReceived(IncomingMessage msg);
        protected void QueueMessageToSend(OutgoingMessage msg) { }
    }

    public static class SideChannelManager
    {
        public static void RegisterSideChannel(SideChannel sideChannel) { }
        public static void UnregisterSideChannel(SideChannel sideChannel) { }
    }
}
