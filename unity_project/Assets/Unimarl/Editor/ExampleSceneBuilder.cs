// Tools > Unimarl > Create Example Scenes: builds the CoopNav and Battle scenes from the example scripts and saves
// them as Assets/Unimarl/Scenes/CoopNav.unity and Battle.unity (added to the build settings), then opens CoopNav.
// Open one, run `unimarl train CONFIG` and press Play.
//
// CoopNav: one area, 3 agents (spheres) and 3 landmarks (cubes), behaviour "CoopNav" (vector observation 14, one
// discrete branch of 5). Battle: the sim's defaults (40 x 40 map, 64 agents a team, view 13), behaviour "Battle"
// with Team Id 0 and 1, three VectorSensorComponents per agent (LocalView, Status, position; vector observation
// size 0, so no CollectObservations sensor joins them), one branch of 21. Every agent has a DecisionRequester
// (Decision Period 1) and Behavior Type Default (trained by unimarl when it is connected); one PolicyHotSwap per
// behaviour and team receives pushed models (set a team to Heuristic Only to have it play the pushed policy).
using System;
using System.Collections.Generic;
using Unimarl.Unity;
using Unity.MLAgents;
using Unity.MLAgents.Actuators;
using Unity.MLAgents.Policies;
using Unity.MLAgents.Sensors;
using UnityEditor;
using UnityEditor.SceneManagement;
using UnityEngine;

namespace Unimarl.Examples.Editor
{
    public static class ExampleSceneBuilder
    {
        public const string Folder = "Assets/Unimarl/Scenes";
        public const int CoopNavAgents = 3, BattleTeamSize = 64;

        [MenuItem("Tools/Unimarl/Create Example Scenes")]
        public static void CreateExampleScenes()
        {
            if (!EditorSceneManager.SaveCurrentModifiedScenesIfUserWantsTo()) return;
            if (!AssetDatabase.IsValidFolder(Folder)) AssetDatabase.CreateFolder("Assets/Unimarl", "Scenes");
            string coopNav = Save("CoopNav", () => BuildCoopNav());
            string battle = Save("Battle", () => BuildBattle());
            AddToBuildSettings(coopNav, battle);
            EditorSceneManager.OpenScene(coopNav);
            Debug.Log("[unimarl] example scenes saved: " + coopNav + ", " + battle);
        }

        static string Save(string name, Action build)
        {
            var scene = EditorSceneManager.NewScene(NewSceneSetup.DefaultGameObjects, NewSceneMode.Single);
            build();
            string path = Folder + "/" + name + ".unity";
            if (!EditorSceneManager.SaveScene(scene, path))
                throw new InvalidOperationException("could not save " + path + "; check that the folder is writable");
            return path;
        }

        static void AddToBuildSettings(params string[] paths)
        {
            var scenes = new List<EditorBuildSettingsScene>(EditorBuildSettings.scenes);
            foreach (var path in paths)
            {
                if (scenes.Exists(s => s.path == path)) continue;
                scenes.Add(new EditorBuildSettingsScene(path, true));
            }
            EditorBuildSettings.scenes = scenes.ToArray();
        }

        /// <summary>The CoopNav area in the open scene.</summary>
        public static CoopNavArea BuildCoopNav()
        {
            var area = new GameObject("CoopNavArea").AddComponent<CoopNavArea>();
            var hotSwap = HotSwap("CoopNav", -1);
            var agents = new CoopNavAgent[CoopNavAgents];
            var landmarks = new Transform[CoopNavAgents];
            for (int i = 0; i < agents.Length; i++)
            {
                var body = Primitive(PrimitiveType.Sphere, "Agent" + i, area.transform, 0.3f);
                // 4 + 2N + 2(N - 1) floats (CoopNavAgent.ObservationVector), one branch of 5 moves
                Parameters(body, "CoopNav", 0, 4 + 2 * agents.Length + 2 * (agents.Length - 1), ActionSpec.MakeDiscrete(5));
                agents[i] = body.AddComponent<CoopNavAgent>();
                agents[i].Configure(area, hotSwap, false);
                Requester(body);
                landmarks[i] = Primitive(PrimitiveType.Cube, "Landmark" + i, area.transform, 0.1f).transform;
            }
            area.Configure(agents, landmarks);
            Aim(new Vector3(0f, 3f, 0f), 1.5f);
            return area;
        }

        /// <summary>The Battle arena in the open scene.</summary>
        public static BattleArena BuildBattle()
        {
            var arena = new GameObject("BattleArena").AddComponent<BattleArena>();
            var agents = new BattleAgent[2 * BattleTeamSize];
            for (int team = 0; team < 2; team++)
            {
                var hotSwap = HotSwap("Battle", team);
                for (int k = 0; k < BattleTeamSize; k++)
                {
                    var body = Primitive(PrimitiveType.Cube, "Team" + team + "Agent" + k, arena.transform, 0.8f);
                    Parameters(body, "Battle", team, 0, ActionSpec.MakeDiscrete(BattleArena.NumActions));
                    var localView = Sensor(body, "LocalView", arena.View * arena.View * BattleArena.Channels);
                    var status = Sensor(body, "Status", 4);
                    var position = Sensor(body, "position", 2);
                    var agent = body.AddComponent<BattleAgent>();
                    agent.Configure(arena, team, localView, status, position, hotSwap);
                    Requester(body);
                    agents[team * BattleTeamSize + k] = agent;
                }
            }
            arena.Configure(agents);
            float middle = (arena.Size - 1) / 2f;
            Aim(new Vector3(middle, arena.Size, -middle), arena.Size / 2f + 1f);
            return arena;
        }

        static GameObject Primitive(PrimitiveType type, string name, Transform parent, float scale)
        {
            var go = GameObject.CreatePrimitive(type);
            go.name = name;
            go.transform.SetParent(parent, false);
            go.transform.localScale = Vector3.one * scale;
            return go;
        }

        static BehaviorParameters Parameters(GameObject go, string behavior, int team, int vectorSize, ActionSpec actions)
        {
            var parameters = go.AddComponent<BehaviorParameters>();
            parameters.BehaviorName = behavior;
            parameters.TeamId = team;
            parameters.BehaviorType = BehaviorType.Default;
            parameters.BrainParameters.VectorObservationSize = vectorSize;
            parameters.BrainParameters.ActionSpec = actions;
            return parameters;
        }

        static VectorSensorComponent Sensor(GameObject go, string name, int size)
        {
            var sensor = go.AddComponent<VectorSensorComponent>();
            sensor.SensorName = name;
            sensor.ObservationSize = size;
            return sensor;
        }

        static void Requester(GameObject go)
        {
            go.AddComponent<DecisionRequester>().DecisionPeriod = 1;
        }

        static PolicyHotSwap HotSwap(string behavior, int team)
        {
            var hotSwap = new GameObject("PolicyHotSwap " + behavior + (team < 0 ? "" : " team " + team)).AddComponent<PolicyHotSwap>();
            hotSwap.BehaviorName = behavior;
            hotSwap.TeamId = team;
            return hotSwap;
        }

        /// <summary>Points the scene's camera straight down at <paramref name="position"/>'s x, z.</summary>
        static void Aim(Vector3 position, float halfHeight)
        {
            foreach (var camera in UnityEngine.Object.FindObjectsByType<Camera>(FindObjectsSortMode.None))
            {
                camera.transform.position = position;
                camera.transform.rotation = Quaternion.Euler(90f, 0f, 0f);
                camera.orthographic = true;
                camera.orthographicSize = halfHeight;
            }
        }
    }
}
