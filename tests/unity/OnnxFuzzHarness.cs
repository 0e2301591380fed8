// Fuzz harness for the plug-in's ONNX reader, compiled with the engine-free core by tests/unity/test_onnx_reader_fuzz.py.
//
//   mono fuzz.exe < PATHS     one model file path per line
//
// For each file: load it as the game does (OnnxPolicy, which parses, checks the operators and, for mean-field
// models, runs the graph once), then run the evaluator once on zeros fed to every graph input (symbolic dims as 1).
// One line per file, flushed at once so that a hang is pinned to the file after the last line:
//   OK                          loaded and ran
//   TYPED <type>: <message>     refused with the core's typed error (OnnxModelException, ProtoFormatException)
//   UNTYPED <type>: <message>   any other exception (a bug in the reader or the evaluator)
using System;
using System.Collections.Generic;
using System.IO;
using Unimarl.Core;

static class OnnxFuzzHarness
{
    static int Main()
    {
        string path;
        while ((path = Console.ReadLine()) != null)
        {
            if (path.Length == 0) continue;
            Console.WriteLine(Outcome(File.ReadAllBytes(path)));
            Console.Out.Flush();
        }
        return 0;
    }

    static string Outcome(byte[] bytes)
    {
        try
        {
            new OnnxPolicy(bytes, 0);
            var evaluator = new OnnxEvaluator(bytes, 0);
            evaluator.Run(Zeros(evaluator.Model));
            return "OK";
        }
        catch (Exception e) when (e is OnnxModelException || e is ProtoFormatException)
        {
            return "TYPED " + Describe(e);
        }
        catch (Exception e)
        {
            return "UNTYPED " + Describe(e) + " " + OneLine(e.StackTrace);
        }
    }

    static string Describe(Exception e) { return e.GetType().Name + ": " + OneLine(e.Message); }

    static string OneLine(string text) { return (text ?? "").Replace('\r', ' ').Replace('\n', ' '); }

    /// <summary>Zeros for every graph input the initializers do not provide; the reader has refused negative
    /// and oversized dims by now, so these allocations stay within its limits.</summary>
    static Dictionary<string, Tensor> Zeros(OnnxModel model)
    {
        var inputs = new Dictionary<string, Tensor>();
        foreach (var input in model.Inputs)
        {
            if (model.Initializers.ContainsKey(input.Name)) continue;
            var shape = new int[input.Dims.Count];
            for (int i = 0; i < shape.Length; i++) shape[i] = input.Dims[i] <= 0 ? 1 : (int)input.Dims[i];
            int count = Tensor.Count(shape);
            inputs[input.Name] = input.ElementType == OnnxModel.Int64
                ? new Tensor(shape, new long[count]) : new Tensor(shape, new float[count]);
        }
        return inputs;
    }
}
