// Runs an ONNX graph exported by unimarl on the CPU, without Unity (engine-free).
//
// Float32 tensors, any batch size >= 1. Nodes run in file order (ONNX graphs are topologically sorted).
// The operator set is the one unimarl's exporter documents and enforces (trainers/onnx_export.py,
// SUPPORTED_OPERATORS); any other operator, or an attribute value an operator does not support (e.g. a Conv that is
// not 2-D), is refused when the model is loaded, not when it first runs.
// Sampling operators (Multinomial, RandomNormalLike) draw from one System.Random seeded at construction, so a
// seeded evaluator is reproducible; the deterministic outputs do not depend on it.
// Constant weights that Gemm / MatMul need in another layout are rearranged once, at construction
// (OnnxLinearAlgebra.cs) and only read by Run.
using System;
using System.Collections.Generic;

namespace Unimarl.Core
{
    public sealed partial class OnnxEvaluator
    {
        static readonly HashSet<string> Supported = new HashSet<string>
        {
            "Add", "ArgMax", "Cast", "Clip", "Concat", "Constant", "Conv", "Div", "Exp", "Flatten", "Gather",
            "Gemm", "Identity", "Log", "MatMul", "Mul", "Multinomial", "Neg", "Pow", "RandomNormalLike",
            "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sqrt", "Squeeze",
            "Sub", "Tanh", "Transpose", "Unsqueeze",
        };

        readonly OnnxModel m_Model;
        readonly Random m_Random;

        public OnnxModel Model { get { return m_Model; } }

        /// <summary>Checks every node's operator; throws OnnxModelException naming the first unsupported one.</summary>
        public OnnxEvaluator(OnnxModel model, int seed)
        {
            m_Model = model;
            m_Random = new Random(seed);
            foreach (var node in model.Nodes)
            {
                if ((node.Domain != "" && node.Domain != "ai.onnx") || !Supported.Contains(node.OpType))
                    throw new OnnxModelException("operator '" + node.OpType + "' (node '" + node.Name + "') is not in the " +
                        "evaluator's operator set; export the policy with unimarl's exporter, which only emits supported operators");
                if (node.OpType == "Conv") CheckConv(node);
                PrepareWeights(node);
            }
            if (model.Opset > 15)
                throw new OnnxModelException("opset " + model.Opset + " is newer than 15; re-export with opset 15 or lower");
        }

        public OnnxEvaluator(byte[] modelBytes, int seed) : this(OnnxModel.Parse(modelBytes), seed) { }

        /// <summary>Runs the graph on <paramref name="inputs"/> (by input name) and returns every graph output.</summary>
        public Dictionary<string, Tensor> Run(IDictionary<string, Tensor> inputs)
        {
            var values = new Dictionary<string, Tensor>(m_Model.Initializers);
            foreach (var input in m_Model.Inputs)
            {
                if (values.ContainsKey(input.Name) && !inputs.ContainsKey(input.Name)) continue;
                Tensor t;
                if (!inputs.TryGetValue(input.Name, out t))
                    throw new OnnxModelException("input '" + input.Name + "' is missing; the model needs " + InputNames());
                CheckInput(input, t);
                values[input.Name] = t;
            }
            foreach (var node in m_Model.Nodes)
            {
                Tensor[] outputs;
                try
                {
                    outputs = Execute(node, Gather(node, values));
                }
                catch (OnnxModelException) { throw; }
                catch (Exception e) when (e is ArgumentException || e is IndexOutOfRangeException || e is InvalidOperationException)
                {
                    throw new OnnxModelException("node '" + node.Name + "' (" + node.OpType + ") failed: " + e.Message, e);
                }
                for (int i = 0; i < outputs.Length && i < node.Outputs.Count; i++) values[node.Outputs[i]] = outputs[i];
            }
            var result = new Dictionary<string, Tensor>();
            foreach (var output in m_Model.Outputs)
            {
                Tensor t;
                if (!values.TryGetValue(output.Name, out t))
                    throw new OnnxModelException("output '" + output.Name + "' is produced by no node, input or initializer");
                result[output.Name] = t;
            }
            return result;
        }

        string InputNames()
        {
            var names = new List<string>();
            foreach (var input in m_Model.Inputs) names.Add(input.Name);
            return "[" + string.Join(", ", names.ToArray()) + "]";
        }

        static void CheckInput(OnnxValueInfo info, Tensor t)
        {
            bool ok = info.Dims.Count == t.Rank;
            for (int i = 0; ok && i < t.Rank; i++) ok = info.Dims[i] <= 0 || info.Dims[i] == t.Shape[i];
            if (!ok)
                throw new OnnxModelException("input '" + info.Name + "' has shape " + t.ShapeString() + ", the model expects [" +
                    string.Join(", ", info.Dims.ConvertAll(d => d < 0 ? "batch" : d.ToString()).ToArray()) + "]");
        }

        static Tensor[] Gather(OnnxNode node, Dictionary<string, Tensor> values)
        {
            var args = new Tensor[node.Inputs.Count];
            for (int i = 0; i < args.Length; i++)
            {
                if (node.Inputs[i].Length == 0) continue;
                if (!values.TryGetValue(node.Inputs[i], out args[i]))
                    throw new OnnxModelException("node '" + node.Name + "' reads '" + node.Inputs[i] + "', which no earlier node produces");
            }
            return args;
        }

        Tensor[] Execute(OnnxNode node, Tensor[] x)
        {
            switch (node.OpType)
            {
                case "Add": return One(Binary(x[0], x[1], BinaryOp.Add));
                case "Sub": return One(Binary(x[0], x[1], BinaryOp.Sub));
                case "Mul": return One(Binary(x[0], x[1], BinaryOp.Mul));
                case "Div": return One(Binary(x[0], x[1], BinaryOp.Div));
                case "Pow": return One(Binary(x[0], x[1], BinaryOp.Pow));
                case "Neg": return One(Neg(x[0]));
                case "Exp": return One(Unary(x[0], a => (float)Math.Exp(a)));
                case "Log": return One(Unary(x[0], a => (float)Math.Log(a)));
                case "Sqrt": return One(Unary(x[0], a => (float)Math.Sqrt(a)));
                case "Tanh": return One(Unary(x[0], a => (float)Math.Tanh(a)));
                case "Relu": return One(Relu(x[0]));
                case "Sigmoid": return One(Unary(x[0], a => (float)(1.0 / (1.0 + Math.Exp(-a)))));
                case "Identity": return One(x[0]);
                case "Clip": return One(Clip(node, x));
                case "Gemm": return One(Gemm(node, x));
                case "Conv": return One(Conv(node, x));
                case "MatMul": return One(MatMul(node, x[0], x[1]));
                case "Softmax": return One(Softmax(x[0], (int)node.Int("axis", m_Model.Opset >= 13 ? -1 : 1)));
                case "ReduceMean": return One(ReduceMean(node, x[0]));
                case "ArgMax": return One(ArgMax(node, x[0]));
                case "Multinomial": return One(Multinomial(node, x[0]));
                case "RandomNormalLike": return One(RandomNormalLike(node, x[0]));
                case "Constant": return One(Constant(node));
                default: return ExecuteShapeOp(node, x);
            }
        }

        static Tensor[] One(Tensor t) { return new[] { t }; }

        static int Axis(long axis, int rank)
        {
            long a = axis < 0 ? axis + rank : axis;
            if (a < 0 || a >= Math.Max(rank, 1)) throw new ArgumentException("axis " + axis + " is outside rank " + rank);
            return (int)a;
        }
    }
}
