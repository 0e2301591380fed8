// Compile-only stand-ins for the Unity / Sentis / ML-Agents API surface the plug-in's glue uses (signatures as in
// the public docs of Unity 6, com.unity.sentis 2.1 and com.unity.ml-agents 3.0.0). They let the glue be compiled
// outside Unity so a typo or a wrong signature fails the build; they do nothing at run time.
using System;
using System.Collections.Generic;

namespace UnityEngine
{
    public class Object
    {
        public string name { get; set; }
        public static T[] FindObjectsByType<T>(FindObjectsSortMode sortMode) where T : Object { return new T[0]; }
        public static void Destroy(Object obj) { }
    }

    public enum FindObjectsSortMode { None = 0, InstanceID = 1 }

    public class Component : Object
    {
        public T GetComponent<T>() { return default(T); }
        public GameObject gameObject { get { return null; } }
    }

    public class GameObject : Object { }
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
        public virtual void CollectObservations(VectorSensor sensor) { }
        public virtual void OnActionReceived(ActionBuffers actions) { }
        public virtual void Heuristic(in ActionBuffers actionsOut) { }
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
