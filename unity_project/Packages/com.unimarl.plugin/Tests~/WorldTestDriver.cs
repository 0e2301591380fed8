// Runs the example games and the plug-in's glue on the stand-in engine (Stubs/), for tests/unity.
//
//   mono world.exe coopnav STEPS                         CoopNav, 3 trained (Default) agents, zero actions
//   mono world.exe battle STEPS MAX_STEPS                 Battle 2 v 2 on an empty 8 x 8 map, trained agents staying
//   mono world.exe arenas COUNT STEPS MAX_STEPS           COUNT such arenas in one scene, created in order
//   mono world.exe fight COUNT STEPS VIEW CHUNK...        COUNT arenas (8 x 8, 50 steps), both teams Heuristic Only
//                                                         running the models pushed for their team (one
//                                                         PolicyHotSwap per team, deterministic); "step I"
//                                                         then "action AGENT A" per active agent after each step
//   mono world.exe selfplay STEPS VIEW CHUNK...           Battle: team 0 trained, team 1 Heuristic Only running the
//                                                         model pushed on the policy channel (deterministic)
//   mono world.exe hotswap [fail=VERSION] [inference0] CHUNK...  Battle: team 0 trained (inference0: Inference Only
//                                                         too), team 1 Inference Only; every chunk file is one
//                                                         side-channel message, followed by one step
//   mono world.exe scenes                                 (Editor) Tools > Unimarl > Create Example Scenes
//   mono world.exe scene coopnav|battle STEPS             (Editor) the scene builder's scene, played with trained agents
//
// Fields are set by reflection before the objects wake up, as Unity deserializes a scene. Output lines:
// "info STEP AGENT EPISODE POLICY BEHAVIOR DONE MAXSTEP REWARD GROUPREWARD GROUP" per AgentInfo handed to a
// policy (GROUP: AgentInfo.groupId, 0 without a group), then "mask V..." (1 = allowed) and "obs NAME V..." per
// sensor, in the order sent; "member ARENA TEAM AGENT" per agent (arenas, fight); "action AGENT A" (selfplay, fight,
// after each step), "ack HEX" per acknowledgement, "models AGENT TEAM CHANGES" (hotswap, at the end),
// "saved PATH", "opened PATH", "build PATH" (scenes), "log LINE" per Debug line.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Reflection;
using Unimarl.Examples;
using Unimarl.Stubs;
using Unimarl.Unity;
using Unity.MLAgents;
using Unity.MLAgents.Actuators;
using Unity.MLAgents.Policies;
using Unity.MLAgents.SideChannels;
using Unity.MLAgents.Sensors;
using UnityEngine;

static class WorldTestDriver
{
    static int Main(string[] args)
    {
        string project = Path.Combine(Path.GetTempPath(), "unimarl_world_" + Guid.NewGuid().ToString("N"));
        Application.dataPath = Path.Combine(project, "Assets");
        Directory.CreateDirectory(Application.dataPath);
        Academy.Instance.IsCommunicatorOn = true;
        try
        {
            switch (args[0])
            {
                case "coopnav": CoopNav(int.Parse(args[1])); break;
                case "battle": Battle(int.Parse(args[1]), int.Parse(args[2])); break;
                case "arenas": Arenas(int.Parse(args[1]), int.Parse(args[2]), int.Parse(args[3])); break;
                case "selfplay": SelfPlay(int.Parse(args[1]), int.Parse(args[2]), args, 3); break;
                case "fight": Fight(int.Parse(args[1]), int.Parse(args[2]), int.Parse(args[3]), args, 4); break;
                case "hotswap": HotSwap(args); break;
#if UNITY_EDITOR
                case "scenes": Scenes(); break;
                case "scene": Scene(args[1], int.Parse(args[2])); break;
#endif
                default: Console.Error.WriteLine("unknown scenario " + args[0]); return 2;
            }
        }
        finally
        {
            foreach (var line in StubEngine.Log) Console.WriteLine("log " + line.Replace('\n', ' '));
            Directory.Delete(project, true);
        }
        return 0;
    }

    static void Set(object target, string field, object value)
    {
        var info = target.GetType().GetField(field, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public);
        if (info == null) throw new MissingFieldException(target.GetType().Name, field);
        info.SetValue(target, value);
    }

    static GameObject Inactive(string name)
    {
        var go = new GameObject(name);
        go.SetActive(false);
        return go;
    }

    static int s_Printed;

    static void Step(int steps)
    {
        var academy = Academy.Instance;
        for (int i = 0; i < steps; i++)
        {
            StubEngine.StartPending();
            academy.EnvironmentStep();
            PrintSent();
        }
    }

    static void PrintSent()
    {
        var sent = Academy.Instance.Sent;
        for (; s_Printed < sent.Count; s_Printed++) Print(sent[s_Printed]);
    }

    static void Print(SentInfo info)
    {
        Console.WriteLine(string.Format(CultureInfo.InvariantCulture, "info {0} {1} {2} {3} {4} {5} {6} {7:R} {8:R} {9}",
            info.AcademyStep, info.AgentId, info.EpisodeId, info.Policy, info.Behavior, info.Done ? 1 : 0,
            info.MaxStepReached ? 1 : 0, info.Reward, info.GroupReward, info.GroupId));
        if (info.Mask.Length > 0)
            Console.WriteLine("mask " + string.Join(" ", Array.ConvertAll(info.Mask, v => v.ToString("R", CultureInfo.InvariantCulture))));
        for (int i = 0; i < info.SensorNames.Count; i++)
            Console.WriteLine("obs " + info.SensorNames[i] + " " + string.Join(" ", Array.ConvertAll(info.Observations[i], v => v.ToString("R", CultureInfo.InvariantCulture))));
    }

    static void CoopNav(int steps)
    {
        var area = Inactive("CoopNavArea").AddComponent<CoopNavArea>();
        var agents = new CoopNavAgent[3];
        for (int i = 0; i < agents.Length; i++)
        {
            var go = Inactive("Agent" + i);
            var parameters = go.AddComponent<BehaviorParameters>();
            parameters.BehaviorName = "CoopNav";
            parameters.BrainParameters.VectorObservationSize = 14;
            parameters.BrainParameters.ActionSpec = ActionSpec.MakeDiscrete(5);
            agents[i] = go.AddComponent<CoopNavAgent>();
            go.AddComponent<DecisionRequester>().DecisionPeriod = 1;
            Set(agents[i], "m_Area", area);
        }
        Set(area, "m_Agents", agents);
        area.gameObject.SetActive(true);
        foreach (var agent in agents) agent.gameObject.SetActive(true);
        Step(steps);
    }

    static BattleArena BattleWorld(int size, int view, int maxSteps, BehaviorType team1, PolicyHotSwap hotSwap,
        BehaviorType team0 = BehaviorType.Default, PolicyHotSwap hotSwap0 = null)
    {
        var arena = Inactive("BattleArena").AddComponent<BattleArena>();
        Set(arena, "m_Size", size);
        Set(arena, "m_View", view);
        Set(arena, "m_Obstacles", 0f);
        Set(arena, "m_MaxSteps", maxSteps);
        var agents = new BattleAgent[4];
        for (int i = 0; i < agents.Length; i++)
        {
            int team = i % 2;
            var go = Inactive("Team" + team + "Agent" + i);
            var parameters = go.AddComponent<BehaviorParameters>();
            parameters.BehaviorName = "Battle";
            parameters.TeamId = team;
            parameters.BehaviorType = team == 1 ? team1 : team0;
            parameters.BrainParameters.VectorObservationSize = 0;
            parameters.BrainParameters.ActionSpec = ActionSpec.MakeDiscrete(BattleArena.NumActions);
            // declared in the order BattleAgent lists them; ML-Agents sorts them by name
            var sizes = new Dictionary<string, int> { { "LocalView", view * view * BattleArena.Channels }, { "Status", 4 }, { "position", 2 } };
            var components = new Dictionary<string, VectorSensorComponent>();
            foreach (var pair in sizes)
            {
                var sensor = go.AddComponent<VectorSensorComponent>();
                sensor.SensorName = pair.Key;
                sensor.ObservationSize = pair.Value;
                components[pair.Key] = sensor;
            }
            agents[i] = go.AddComponent<BattleAgent>();
            go.AddComponent<DecisionRequester>().DecisionPeriod = 1;
            Set(agents[i], "m_Arena", arena);
            Set(agents[i], "m_Team", team);
            Set(agents[i], "m_LocalView", components["LocalView"]);
            Set(agents[i], "m_Status", components["Status"]);
            Set(agents[i], "m_Position", components["position"]);
            if (team == 1) Set(agents[i], "m_HotSwap", hotSwap);
            else if (hotSwap0 != null) Set(agents[i], "m_HotSwap", hotSwap0);
        }
        Set(arena, "m_Agents", agents);
        arena.gameObject.SetActive(true);
        foreach (var agent in agents) agent.gameObject.SetActive(true);
        return arena;
    }

    static PolicyHotSwap HotSwapFor(int team)
    {
        var hotSwap = Inactive("PolicyHotSwap").AddComponent<PolicyHotSwap>();
        Set(hotSwap, "m_BehaviorName", "Battle");
        Set(hotSwap, "m_TeamId", team);
        Set(hotSwap, "m_Deterministic", true);
        hotSwap.gameObject.SetActive(true);
        return hotSwap;
    }

    static void Battle(int steps, int maxSteps)
    {
        BattleWorld(8, 3, maxSteps, BehaviorType.Default, null);
        Step(steps);
    }

    static void PrintMembers(int arenaIndex, BattleArena arena)
    {
        var field = typeof(BattleArena).GetField("m_Agents", BindingFlags.Instance | BindingFlags.NonPublic);
        foreach (var agent in (BattleAgent[])field.GetValue(arena))
            Console.WriteLine("member " + arenaIndex + " " + agent.Team + " " + agent.GetInstanceID());
    }

    static void Arenas(int count, int steps, int maxSteps)
    {
        for (int k = 0; k < count; k++) PrintMembers(k, BattleWorld(8, 3, maxSteps, BehaviorType.Default, null));
        Step(steps);
    }

    static void Fight(int count, int steps, int view, string[] args, int firstChunk)
    {
        var hotSwaps = new[] { HotSwapFor(0), HotSwapFor(1) };
        for (int k = 0; k < count; k++)
            PrintMembers(k, BattleWorld(8, view, 50, BehaviorType.HeuristicOnly, hotSwaps[1], BehaviorType.HeuristicOnly, hotSwaps[0]));
        for (int i = firstChunk; i < args.Length; i++) Push(args[i]);
        for (int i = 0; i < steps; i++)
        {
            Step(1);
            Console.WriteLine("step " + i);
            foreach (var agent in UnityEngine.Object.FindObjectsByType<BattleAgent>(FindObjectsSortMode.None))
                Console.WriteLine("action " + agent.GetInstanceID() + " " + agent.ChosenAction);
        }
    }

    static void Push(string chunkFile)
    {
        foreach (var channel in SideChannelManager.Registered.Values) channel.ProcessMessage(File.ReadAllBytes(chunkFile));
        foreach (var channel in SideChannelManager.Registered.Values)
        {
            PrintSent();
            foreach (var message in channel.MessageQueue) Console.WriteLine("ack " + BitConverter.ToString(message).Replace("-", "").ToLowerInvariant());
            channel.MessageQueue.Clear();
        }
    }

    static void SelfPlay(int steps, int view, string[] args, int firstChunk)
    {
        var hotSwap = HotSwapFor(1);
        BattleWorld(8, view, 50, BehaviorType.HeuristicOnly, hotSwap);
        for (int i = firstChunk; i < args.Length; i++) Push(args[i]);
        for (int i = 0; i < steps; i++)
        {
            Step(1);
            foreach (var agent in UnityEngine.Object.FindObjectsByType<BattleAgent>(FindObjectsSortMode.None))
                Console.WriteLine("action " + agent.GetInstanceID() + " " + agent.ChosenAction);
        }
    }

    static void HotSwap(string[] args)
    {
        int first = 1;
        if (args.Length > 1 && args[1].StartsWith("fail="))
        {
            string version = "_v" + args[1].Substring(5);
            StubInference.LoadError = model => model.name.EndsWith(version) ? new InvalidOperationException("cannot create a worker for " + model.name) : null;
            first = 2;
        }
        var team0 = BehaviorType.Default;
        if (args.Length > first && args[first] == "inference0")
        {
            team0 = BehaviorType.InferenceOnly;
            first++;
        }
        var hotSwap = HotSwapFor(-1);
        BattleWorld(8, 3, 50, BehaviorType.InferenceOnly, hotSwap, team0);
        Step(1);
        for (int i = first; i < args.Length; i++)
        {
            Push(args[i]);
            Step(1);
        }
        foreach (var agent in UnityEngine.Object.FindObjectsByType<BattleAgent>(FindObjectsSortMode.None))
            Console.WriteLine("models " + agent.GetInstanceID() + " " + agent.Team + " " + agent.ModelChanges);
    }

#if UNITY_EDITOR
    static void Scenes()
    {
        StubEngine.IsPlaying = false;
        Unimarl.Examples.Editor.ExampleSceneBuilder.CreateExampleScenes();
        foreach (var path in UnityEditor.SceneManagement.EditorSceneManager.Saved) Console.WriteLine("saved " + path);
        foreach (var path in UnityEditor.SceneManagement.EditorSceneManager.Opened) Console.WriteLine("opened " + path);
        foreach (var scene in UnityEditor.EditorBuildSettings.scenes) Console.WriteLine("build " + scene.path);
    }

    static void Scene(string name, int steps)
    {
        StubEngine.IsPlaying = false;
        UnityEditor.SceneManagement.EditorSceneManager.NewScene(UnityEditor.SceneManagement.NewSceneSetup.DefaultGameObjects);
        if (name == "coopnav") Unimarl.Examples.Editor.ExampleSceneBuilder.BuildCoopNav();
        else Unimarl.Examples.Editor.ExampleSceneBuilder.BuildBattle();
        StubEngine.EnterPlayMode();
        Step(steps);
    }
#endif
}
