// Stand-ins for the UnityEditor API the plug-in's Editor path and the example scene builder use (signatures as in
// Unity 6's scripting reference). AssetDatabase imports a written .onnx file as a ModelAsset the way the
// inference package's importer does (StubInference decides whether it loads); scenes are recorded, not written.
using System;
using System.Collections.Generic;
using Unimarl.Stubs;

namespace UnityEditor
{
    public static class AssetDatabase
    {
        static readonly Dictionary<string, UnityEngine.Object> s_Assets = new Dictionary<string, UnityEngine.Object>();

        public static void ImportAsset(string path)
        {
            var file = OnDisk(path);
            if (path.EndsWith(".onnx") && System.IO.File.Exists(file)) s_Assets[path] = StubInference.Import(path, System.IO.File.ReadAllBytes(file));
        }

        public static T LoadAssetAtPath<T>(string assetPath) where T : UnityEngine.Object
        {
            UnityEngine.Object asset;
            return s_Assets.TryGetValue(assetPath, out asset) ? asset as T : null;
        }

        static string OnDisk(string path) { return System.IO.Path.Combine(UnityEngine.Application.dataPath, "..", path); }

        public static bool IsValidFolder(string path) { return System.IO.Directory.Exists(OnDisk(path)); }

        /// <summary>Creates the folder on disk, as Unity does; "" when the parent does not exist.</summary>
        public static string CreateFolder(string parentFolder, string newFolderName)
        {
            if (!IsValidFolder(parentFolder)) return "";
            System.IO.Directory.CreateDirectory(OnDisk(parentFolder + "/" + newFolderName));
            return Guid.NewGuid().ToString("N");
        }

        public static void Refresh() { }
    }

    [AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
    public sealed class MenuItem : Attribute
    {
        public MenuItem(string itemName) { }
        public MenuItem(string itemName, bool isValidateFunction) { }
        public MenuItem(string itemName, bool isValidateFunction, int priority) { }
    }

    public static class EditorUtility
    {
        public static bool DisplayDialog(string title, string message, string ok) { return true; }
    }

    public class EditorBuildSettingsScene
    {
        public EditorBuildSettingsScene(string path, bool enabled) { this.path = path; this.enabled = enabled; }
        public string path { get; set; }
        public bool enabled { get; set; }
    }

    public class EditorBuildSettings
    {
        public static EditorBuildSettingsScene[] scenes { get; set; } = new EditorBuildSettingsScene[0];
    }
}

namespace UnityEditor.SceneManagement
{
    using UnityEngine.SceneManagement;

    public enum NewSceneSetup { EmptyScene = 0, DefaultGameObjects = 1 }
    public enum NewSceneMode { Single = 0, Additive = 1 }
    public enum OpenSceneMode { Single = 0, Additive = 1, AdditiveWithoutLoading = 2 }

    public static class EditorSceneManager
    {
        /// <summary>Paths saved, in order (not Unity API).</summary>
        internal static readonly List<string> Saved = new List<string>();

        public static Scene NewScene(NewSceneSetup setup, NewSceneMode mode = NewSceneMode.Single)
        {
            if (mode == NewSceneMode.Single)
                foreach (var go in StubEngine.Objects.ToArray()) UnityEngine.Object.DestroyImmediate(go);
            if (setup == NewSceneSetup.DefaultGameObjects)
            {
                var camera = new UnityEngine.GameObject("Main Camera");
                camera.tag = "MainCamera";
                camera.AddComponent<UnityEngine.Camera>();
                new UnityEngine.GameObject("Directional Light").AddComponent<UnityEngine.Light>().type = UnityEngine.LightType.Directional;
            }
            return new Scene();
        }

        public static bool SaveScene(Scene scene, string dstScenePath = "", bool saveAsCopy = false)
        {
            Saved.Add(dstScenePath);
            return true;
        }

        public static Scene OpenScene(string scenePath, OpenSceneMode mode = OpenSceneMode.Single)
        {
            Opened.Add(scenePath);
            return new Scene { path = scenePath };
        }

        /// <summary>Paths opened, in order (not Unity API).</summary>
        internal static readonly List<string> Opened = new List<string>();

        public static bool SaveCurrentModifiedScenesIfUserWantsTo() { return true; }
    }
}
