// Command-line driver for the engine-free core, used by tests/unity and benchmarks/onnx_evaluator.py.
//
//   mono driver.exe eval  MODEL.onnx INPUTS.bin OUTPUTS.bin [SEED]   run the model once, write every output
//   mono driver.exe bench MODEL.onnx INPUTS.bin ITERATIONS           print "seconds_per_run S" over ITERATIONS runs
//   mono driver.exe codec MAX_MODEL_SIZE PAYLOAD...                  feed chunk payload files to one assembler
//   mono driver.exe policy MODEL.onnx INPUTS.bin                     one OnnxPolicy decision (batch 1, deterministic)
//   mono driver.exe meanaction CONTINUOUS BRANCHES SCRIPT            run a MeanActionRecorder script
//
// Tensor files: int32 count, then per tensor: int32 name length, UTF-8 name, int32 element type (1 float32,
// 7 int64), int32 rank, int32 dims, data (little-endian). Codec lines, one per payload: "none",
// "model BEHAVIOR VERSION SHA256HEX ACKHEX" or "reject REASON ACKHEX" (ACKHEX: the serialized acknowledgement).
// policy prints "layout D CONTINUOUS BRANCH,SIZES", "continuous V..." and "discrete V..." (INPUTS: obs_i, action_masks,
// mean_action, each [1, ...]; a missing mean_action is fed as zeros). meanaction: BRANCHES is "3,4" or "-"; SCRIPT
// lines are "roll", "forget ID", "record AGENT V..." (continuous values, then one integer per branch) and
// "mean AGENT", which prints "mean AGENT V..."; AGENT is "ID" (group 0, team 0) or "ID:GROUP:TEAM" (the agent's
// SimpleMultiAgentGroup id, 0 for none, and Team Id: MeanActionRecorder.Segment).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Text;
using Unimarl.Core;

static class CoreTestDriver
{
    static int Main(string[] args)
    {
        try
        {
            switch (args.Length > 0 ? args[0] : "")
            {
                case "eval": return Eval(args);
                case "bench": return Bench(args);
                case "codec": return Codec(args);
                case "policy": return Policy(args);
                case "meanaction": return MeanAction(args);
                default:
                    Console.Error.WriteLine("usage: driver.exe eval|bench|codec ...");
                    return 2;
            }
        }
        catch (OnnxModelException e)
        {
            Console.Error.WriteLine("model error: " + e.Message);
            return 1;
        }
    }

    static int Eval(string[] args)
    {
        int seed = args.Length > 4 ? int.Parse(args[4]) : 0;
        var evaluator = new OnnxEvaluator(File.ReadAllBytes(args[1]), seed);
        var outputs = evaluator.Run(ReadTensors(args[2]));
        WriteTensors(args[3], outputs);
        return 0;
    }

    static int Bench(string[] args)
    {
        var evaluator = new OnnxEvaluator(File.ReadAllBytes(args[1]), 0);
        var inputs = ReadTensors(args[2]);
        int iterations = int.Parse(args[3]);
        for (int i = 0; i < Math.Min(iterations, 20); i++) evaluator.Run(inputs);  // JIT warm-up
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < iterations; i++) evaluator.Run(inputs);
        Console.WriteLine("seconds_per_run " + (watch.Elapsed.TotalSeconds / iterations).ToString("R"));
        return 0;
    }

    static int Codec(string[] args)
    {
        var assembler = new PolicyAssembler(long.Parse(args[1]));
        for (int i = 2; i < args.Length; i++)
        {
            try
            {
                var policy = assembler.Feed(File.ReadAllBytes(args[i]));
                if (policy == null) { Console.WriteLine("none"); continue; }
                var ack = PolicyAck.Encode(policy.Behavior, policy.Version, policy.Sha256, PolicyRejectReason.Accepted, "");
                Console.WriteLine("model " + policy.Behavior + " " + policy.Version + " " + Hex(policy.Sha256) + " " + Hex(ack));
            }
            catch (PolicyRejectedException e)
            {
                var ack = PolicyAck.Encode(e.Behavior, e.Version, e.Sha256, e.Reason, e.Message);
                Console.WriteLine("reject " + e.Reason + " " + Hex(ack));
            }
        }
        return 0;
    }

    static int Policy(string[] args)
    {
        var policy = new OnnxPolicy(File.ReadAllBytes(args[1]), 0);
        var inputs = ReadTensors(args[2]);
        var observations = new List<float[]>();
        for (int i = 0; i < policy.ObservationCount; i++) observations.Add(inputs["obs_" + i].AsFloats());
        Tensor mask, mean;
        inputs.TryGetValue("action_masks", out mask);
        inputs.TryGetValue(OnnxPolicy.MeanActionInput, out mean);
        var continuous = new float[policy.ContinuousSize];
        var discrete = new int[policy.BranchSizes.Length];
        policy.Decide(observations, mask == null ? null : mask.AsFloats(), mean == null ? null : mean.AsFloats(), true, continuous, discrete);
        Console.WriteLine("layout " + policy.MeanActionSize + " " + policy.ContinuousSize + " " + Join(policy.BranchSizes));
        Console.WriteLine("continuous " + string.Join(" ", Array.ConvertAll(continuous, v => v.ToString("R"))));
        Console.WriteLine("discrete " + string.Join(" ", Array.ConvertAll(discrete, v => v.ToString())));
        return 0;
    }

    static int MeanAction(string[] args)
    {
        int continuousSize = int.Parse(args[1]);
        var branches = args[2] == "-" ? new int[0] : Array.ConvertAll(args[2].Split(','), int.Parse);
        var recorder = new MeanActionRecorder(continuousSize, branches);
        var mean = new float[recorder.Size];
        foreach (var line in File.ReadAllLines(args[3]))
        {
            var parts = line.Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0) continue;
            switch (parts[0])
            {
                case "roll": recorder.RollOver(); break;
                case "forget": recorder.Forget(int.Parse(parts[1])); break;
                case "record":
                    var continuous = new float[continuousSize];
                    for (int i = 0; i < continuousSize; i++) continuous[i] = float.Parse(parts[2 + i], System.Globalization.CultureInfo.InvariantCulture);
                    var discrete = new int[branches.Length];
                    for (int b = 0; b < branches.Length; b++) discrete[b] = int.Parse(parts[2 + continuousSize + b]);
                    long segment;
                    recorder.Record(ParseAgent(parts[1], out segment), segment, continuous, discrete);
                    break;
                case "mean":
                    long own;
                    int agent = ParseAgent(parts[1], out own);
                    recorder.MeanAction(agent, own, mean);
                    Console.WriteLine("mean " + parts[1] + " " + string.Join(" ", Array.ConvertAll(mean, v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture))));
                    break;
                default: throw new ArgumentException("unknown script line '" + line + "'");
            }
        }
        return 0;
    }

    /// <summary>"ID" or "ID:GROUP:TEAM" -> ID and the agent's segment.</summary>
    static int ParseAgent(string text, out long segment)
    {
        var fields = text.Split(':');
        segment = MeanActionRecorder.Segment(fields.Length > 1 ? int.Parse(fields[1]) : 0, fields.Length > 2 ? int.Parse(fields[2]) : 0);
        return int.Parse(fields[0]);
    }

    static string Join(int[] values)
    {
        return values.Length == 0 ? "-" : string.Join(",", Array.ConvertAll(values, v => v.ToString()));
    }

    static string Hex(byte[] bytes)
    {
        var sb = new StringBuilder();
        foreach (byte b in bytes) sb.Append(b.ToString("x2"));
        return sb.Length == 0 ? "-" : sb.ToString();
    }

    static Dictionary<string, Tensor> ReadTensors(string path)
    {
        var result = new Dictionary<string, Tensor>();
        using (var r = new BinaryReader(File.OpenRead(path)))
        {
            int count = r.ReadInt32();
            for (int t = 0; t < count; t++)
            {
                string name = Encoding.UTF8.GetString(r.ReadBytes(r.ReadInt32()));
                int type = r.ReadInt32(), rank = r.ReadInt32();
                var shape = new int[rank];
                for (int i = 0; i < rank; i++) shape[i] = r.ReadInt32();
                int n = Tensor.Count(shape);
                if (type == OnnxModel.Int64)
                {
                    var data = new long[n];
                    for (int i = 0; i < n; i++) data[i] = r.ReadInt64();
                    result[name] = new Tensor(shape, data);
                }
                else
                {
                    var data = new float[n];
                    for (int i = 0; i < n; i++) data[i] = r.ReadSingle();
                    result[name] = new Tensor(shape, data);
                }
            }
        }
        return result;
    }

    static void WriteTensors(string path, Dictionary<string, Tensor> tensors)
    {
        using (var w = new BinaryWriter(File.Create(path)))
        {
            w.Write(tensors.Count);
            foreach (var pair in tensors)
            {
                byte[] name = Encoding.UTF8.GetBytes(pair.Key);
                w.Write(name.Length);
                w.Write(name);
                w.Write(pair.Value.IsInt ? OnnxModel.Int64 : OnnxModel.Float);
                w.Write(pair.Value.Rank);
                foreach (int d in pair.Value.Shape) w.Write(d);
                if (pair.Value.IsInt) foreach (long v in pair.Value.Ints) w.Write(v);
                else foreach (float v in pair.Value.Floats) w.Write(v);
            }
        }
    }
}
