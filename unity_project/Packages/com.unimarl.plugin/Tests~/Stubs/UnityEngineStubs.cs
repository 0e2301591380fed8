// Stand-ins for the UnityEngine / UnityEditor API the plug-in, the example agents and the scene builder use, with
// signatures as in Unity 6's scripting reference. Beyond compiling, they run a small model of the engine that the
// Mono tests (tests/unity) drive: GameObjects holding components, Awake on first activation, OnEnable/OnDisable
// as objects turn on and off, Start before the first step (StubEngine.StartPending), FindObjectsByType over the
// active objects. Members that are not Unity API live in Unimarl.Stubs.
using System;
using System.Collections.Generic;
using System.Reflection;

namespace Unimarl.Stubs
{
    /// <summary>The engine loop of the stand-ins: what Unity does between the calls the tests make.</summary>
    public static class StubEngine
    {
        internal static readonly List<UnityEngine.GameObject> Objects = new List<UnityEngine.GameObject>();
        static readonly HashSet<UnityEngine.Behaviour> s_Started = new HashSet<UnityEngine.Behaviour>();
        static readonly HashSet<UnityEngine.Component> s_Awoken = new HashSet<UnityEngine.Component>();
        public static readonly List<string> Log = new List<string>();

        /// <summary>False in edit mode: objects and components are created without Awake/OnEnable, as in the
        /// Editor for scripts without [ExecuteInEditMode].</summary>
        public static bool IsPlaying = true;

        /// <summary>Play mode: Awake and OnEnable for every active object (Unity: on entering play mode).</summary>
        public static void EnterPlayMode()
        {
            IsPlaying = true;
            foreach (var go in Objects.ToArray()) if (go.activeInHierarchy) Activate(go);
        }

        /// <summary>Calls Start on every active, enabled behaviour that has not started (Unity: before its first
        /// frame).</summary>
        public static void StartPending()
        {
            foreach (var go in Objects.ToArray())
                foreach (var c in go.Components)
                {
                    var b = c as UnityEngine.Behaviour;
                    if (b != null && b.isActiveAndEnabled && s_Started.Add(b)) Send(b, "Start");
                }
        }

        internal static void Activate(UnityEngine.GameObject go)
        {
            foreach (var c in go.Components.ToArray()) Activate(c);
        }

        internal static void Activate(UnityEngine.Component c)
        {
            if (!IsPlaying) return;
            if (s_Awoken.Add(c)) Send(c, "Awake");
            var b = c as UnityEngine.Behaviour;
            if (b != null && b.enabled) Send(b, "OnEnable");
        }

        internal static void Deactivate(UnityEngine.GameObject go)
        {
            if (!IsPlaying) return;
            foreach (var c in go.Components.ToArray())
            {
                var b = c as UnityEngine.Behaviour;
                if (b != null && b.enabled && s_Awoken.Contains(b)) Send(b, "OnDisable");
            }
        }

        /// <summary>Calls the message method <paramref name="message"/> (any access level, declared on the
        /// component's class or a base) as Unity does.</summary>
        internal static void Send(UnityEngine.Component target, string message)
        {
            const BindingFlags flags = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly;
            for (var type = target.GetType(); type != null; type = type.BaseType)
            {
                var method = type.GetMethod(message, flags, null, Type.EmptyTypes, null);
                if (method == null) continue;
                try
                {
                    method.Invoke(target, null);
                }
                catch (TargetInvocationException e)
                {
                    throw e.InnerException;
                }
                return;
            }
        }
    }
}

namespace UnityEngine
{
    using Unimarl.Stubs;

    public class Object
    {
        static int s_NextId;
        readonly int m_InstanceId = ++s_NextId;

        public virtual string name { get; set; }
        public int GetInstanceID() { return m_InstanceId; }

        /// <summary>Active objects only, as Unity (FindObjectsInactive.Exclude).</summary>
        public static T[] FindObjectsByType<T>(FindObjectsSortMode sortMode) where T : Object
        {
            var found = new List<T>();
            foreach (var go in StubEngine.Objects)
            {
                if (!go.activeInHierarchy) continue;
                foreach (var c in go.Components)
                {
                    var behaviour = c as Behaviour;
                    if (c is T && (behaviour == null || behaviour.enabled)) found.Add((T)(object)c);
                }
            }
            return found.ToArray();
        }

        public static void Destroy(Object obj) { DestroyImmediate(obj); }

        public static void DestroyImmediate(Object obj)
        {
            var go = obj as GameObject;
            if (go == null) return;
            if (go.activeInHierarchy) StubEngine.Deactivate(go);
            if (StubEngine.IsPlaying) foreach (var c in go.Components) StubEngine.Send(c, "OnDestroy");
            StubEngine.Objects.Remove(go);
        }
    }

    public enum FindObjectsSortMode { None = 0, InstanceID = 1 }
    public enum PrimitiveType { Sphere = 0, Capsule = 1, Cylinder = 2, Cube = 3, Plane = 4, Quad = 5 }
    public enum LightType { Spot = 0, Directional = 1, Point = 2, Rectangle = 3, Disc = 4 }

    public sealed class GameObject : Object
    {
        internal readonly List<Component> Components = new List<Component>();
        bool m_Active = true;

        public GameObject() : this("New Game Object") { }

        public GameObject(string name)
        {
            this.name = name;
            Add(typeof(Transform));
            StubEngine.Objects.Add(this);
        }

        public Transform transform { get { return (Transform)Components[0]; } }
        public bool activeSelf { get { return m_Active; } }
        public bool activeInHierarchy
        {
            get { return m_Active && (transform.parent == null || transform.parent.gameObject.activeInHierarchy); }
        }
        public string tag { get; set; }

        public void SetActive(bool value)
        {
            if (value == m_Active) return;
            bool wasActive = activeInHierarchy;
            m_Active = value;
            if (!wasActive && activeInHierarchy) StubEngine.Activate(this);
            else if (wasActive && !activeInHierarchy) StubEngine.Deactivate(this);
        }

        public T AddComponent<T>() where T : Component { return (T)AddComponent(typeof(T)); }

        public Component AddComponent(Type componentType)
        {
            // [RequireComponent] types are added first (Agent requires BehaviorParameters).
            foreach (RequireComponent require in componentType.GetCustomAttributes(typeof(RequireComponent), true))
                if (GetComponent(require.m_Type0) == null) AddComponent(require.m_Type0);
            var component = Add(componentType);
            if (activeInHierarchy) StubEngine.Activate(component);
            return component;
        }

        Component Add(Type componentType)
        {
            var component = (Component)Activator.CreateInstance(componentType, true);
            component.m_GameObject = this;
            Components.Add(component);
            return component;
        }

        public Component GetComponent(Type type)
        {
            foreach (var c in Components) if (type.IsInstanceOfType(c)) return c;
            return null;
        }

        public T GetComponent<T>() { return (T)(object)GetComponent(typeof(T)); }

        public T[] GetComponents<T>()
        {
            var found = new List<T>();
            foreach (var c in Components) if (c is T) found.Add((T)(object)c);
            return found.ToArray();
        }

        public static GameObject CreatePrimitive(PrimitiveType type)
        {
            var go = new GameObject(type.ToString());
            go.AddComponent<MeshRenderer>();
            return go;
        }
    }

    public class Component : Object
    {
        internal GameObject m_GameObject;

        public GameObject gameObject { get { return m_GameObject; } }
        public Transform transform { get { return m_GameObject.transform; } }
        public override string name { get { return m_GameObject.name; } set { m_GameObject.name = value; } }
        public T GetComponent<T>() { return m_GameObject.GetComponent<T>(); }
        public T[] GetComponents<T>() { return m_GameObject.GetComponents<T>(); }
    }

    public class Transform : Component
    {
        public Vector3 localPosition { get; set; }
        public Vector3 position { get; set; }
        public Vector3 localScale { get; set; }
        public Quaternion rotation { get; set; }
        public Transform parent { get; private set; }
        public void SetParent(Transform parent) { SetParent(parent, true); }
        public void SetParent(Transform parent, bool worldPositionStays) { this.parent = parent; }
    }

    public class Behaviour : Component
    {
        bool m_Enabled = true;

        public bool enabled
        {
            get { return m_Enabled; }
            set
            {
                if (value == m_Enabled) return;
                m_Enabled = value;
                if (gameObject.activeInHierarchy && StubEngine.IsPlaying) StubEngine.Send(this, value ? "OnEnable" : "OnDisable");
            }
        }

        public bool isActiveAndEnabled { get { return m_Enabled && gameObject.activeInHierarchy; } }
    }

    public class MonoBehaviour : Behaviour { }
    public class ScriptableObject : Object { }
    public class Renderer : Component { }
    public class MeshRenderer : Renderer { }

    public sealed class Camera : Behaviour
    {
        public bool orthographic { get; set; }
        public float orthographicSize { get; set; }
    }

    public sealed class Light : Behaviour
    {
        public LightType type { get; set; }
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
        public static float Distance(Vector2 a, Vector2 b)
        {
            float dx = a.x - b.x, dy = a.y - b.y;
            return (float)Math.Sqrt(dx * dx + dy * dy);
        }
        public static Vector2 operator +(Vector2 a, Vector2 b) { return new Vector2(a.x + b.x, a.y + b.y); }
        public static Vector2 operator -(Vector2 a, Vector2 b) { return new Vector2(a.x - b.x, a.y - b.y); }
        public static Vector2 operator *(Vector2 a, float d) { return new Vector2(a.x * d, a.y * d); }
        public bool Equals(Vector2 other) { return x == other.x && y == other.y; }
    }

    public struct Vector2Int : IEquatable<Vector2Int>
    {
        public int x { get; set; }
        public int y { get; set; }
        public Vector2Int(int x, int y) { this.x = x; this.y = y; }
        public static Vector2Int operator +(Vector2Int a, Vector2Int b) { return new Vector2Int(a.x + b.x, a.y + b.y); }
        public bool Equals(Vector2Int other) { return x == other.x && y == other.y; }
        public override bool Equals(object other) { return other is Vector2Int && Equals((Vector2Int)other); }
        public override int GetHashCode() { return x * 73856093 ^ y * 19349663; }
    }

    public struct Vector3
    {
        public float x, y, z;
        public Vector3(float x, float y, float z) { this.x = x; this.y = y; this.z = z; }
        public static Vector3 one { get { return new Vector3(1f, 1f, 1f); } }
        public static Vector3 operator *(Vector3 a, float d) { return new Vector3(a.x * d, a.y * d, a.z * d); }
    }

    public struct Quaternion
    {
        public float x, y, z, w;
        public static Quaternion Euler(float x, float y, float z) { return new Quaternion(); }
    }

    public static class Mathf
    {
        public static float Clamp(float value, float min, float max) { return value < min ? min : value > max ? max : value; }
        public static int Clamp(int value, int min, int max) { return value < min ? min : value > max ? max : value; }
        public static float Min(float a, float b) { return a < b ? a : b; }
        public static int Max(int a, int b) { return a > b ? a : b; }
    }

    public static class Debug
    {
        public static void Log(object message) { StubEngine.Log.Add("log " + message); }
        public static void LogWarning(object message) { StubEngine.Log.Add("warning " + message); }
        public static void LogError(object message) { StubEngine.Log.Add("error " + message); }
    }

    public static class Application
    {
        /// <summary>The project's Assets folder; the tests point it at a scratch folder.</summary>
        public static string dataPath { get; internal set; }
    }

    [AttributeUsage(AttributeTargets.Field)] public sealed class SerializeField : Attribute { }
    [AttributeUsage(AttributeTargets.Field)] public sealed class TooltipAttribute : Attribute { public TooltipAttribute(string tooltip) { } }
    [AttributeUsage(AttributeTargets.Class)] public sealed class DisallowMultipleComponent : Attribute { }

    [AttributeUsage(AttributeTargets.Class, AllowMultiple = true)]
    public sealed class RequireComponent : Attribute
    {
        public Type m_Type0;
        public RequireComponent(Type requiredComponent) { m_Type0 = requiredComponent; }
    }
}

namespace UnityEngine.SceneManagement
{
    public struct Scene
    {
        public string path { get; internal set; }
        public bool IsValid() { return true; }
    }
}
