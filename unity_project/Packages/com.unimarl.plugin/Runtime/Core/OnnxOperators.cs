// Clip, Softmax, reduction, sampling and Constant operators of the engine-free evaluator (ONNX opset <= 15
// semantics). Element-wise operators: OnnxElementwise.cs; Gemm and MatMul: OnnxLinearAlgebra.cs.
using System;

namespace Unimarl.Core
{
    public sealed partial class OnnxEvaluator
    {
        static Tensor Clip(OnnxNode node, Tensor[] x)
        {
            // Opset 11+: min and max are optional inputs; before, attributes.
            float lo = x.Length > 1 && x[1] != null ? (float)x[1].Get(0) : node.Float("min", float.NegativeInfinity);
            float hi = x.Length > 2 && x[2] != null ? (float)x[2].Get(0) : node.Float("max", float.PositiveInfinity);
            return Unary(x[0], a => a < lo ? lo : a > hi ? hi : a);
        }

        /// <summary>Splits a shape around <paramref name="axis"/> into outer count, axis size and inner count.</summary>
        static void AroundAxis(int[] shape, int axis, out int outer, out int size, out int inner)
        {
            outer = 1;
            inner = 1;
            for (int i = 0; i < axis; i++) outer *= shape[i];
            for (int i = axis + 1; i < shape.Length; i++) inner *= shape[i];
            size = shape[axis];
        }

        static Tensor Softmax(Tensor x, long axisAttr)
        {
            int outer, size, inner;
            AroundAxis(x.Shape, Axis(axisAttr, x.Rank), out outer, out size, out inner);
            var src = x.AsFloats();
            var dst = new float[src.Length];
            for (int o = 0; o < outer; o++)
                for (int i = 0; i < inner; i++)
                {
                    int start = o * size * inner + i;
                    float max = float.NegativeInfinity;
                    for (int s = 0; s < size; s++) max = Math.Max(max, src[start + s * inner]);
                    double total = 0;
                    for (int s = 0; s < size; s++) total += dst[start + s * inner] = (float)Math.Exp(src[start + s * inner] - max);
                    for (int s = 0; s < size; s++) dst[start + s * inner] = (float)(dst[start + s * inner] / total);
                }
            return new Tensor(x.Shape, dst);
        }

        static Tensor ReduceMean(OnnxNode node, Tensor x)
        {
            var axes = node.Ints("axes");
            bool keep = node.Int("keepdims", 1) != 0;
            var reduce = new bool[x.Rank];
            if (axes == null || axes.Count == 0) for (int i = 0; i < x.Rank; i++) reduce[i] = true;
            else foreach (long a in axes) reduce[Axis(a, x.Rank)] = true;
            var outShape = new int[x.Rank];
            for (int i = 0; i < x.Rank; i++) outShape[i] = reduce[i] ? 1 : x.Shape[i];
            var sums = new double[Tensor.Count(outShape)];
            var src = x.AsFloats();
            int lastAxis = x.Rank - 1;
            bool onlyLast = lastAxis >= 0 && reduce[lastAxis];
            for (int i = 0; i < lastAxis; i++) onlyLast &= !reduce[i];
            if (onlyLast)
            {
                int width = x.Shape[lastAxis];
                for (int r = 0; r < sums.Length; r++)
                    for (int c = 0; c < width; c++) sums[r] += src[r * width + c];
            }
            else
            {
                var strides = BroadcastStrides(outShape, x.Shape);
                ForEachBroadcast(x.Shape, strides, strides, (k, o, unused) => sums[o] += src[k]);
            }
            int count = src.Length / Math.Max(sums.Length, 1);
            var mean = new float[sums.Length];
            for (int i = 0; i < mean.Length; i++) mean[i] = (float)(sums[i] / count);
            if (keep) return new Tensor(outShape, mean);
            var kept = new System.Collections.Generic.List<int>();
            for (int i = 0; i < x.Rank; i++) if (!reduce[i]) kept.Add(x.Shape[i]);
            return new Tensor(kept.ToArray(), mean);
        }

        static Tensor ArgMax(OnnxNode node, Tensor x)
        {
            int axis = Axis(node.Int("axis", 0), x.Rank), outer, size, inner;
            bool keep = node.Int("keepdims", 1) != 0, last = node.Int("select_last_index", 0) != 0;
            AroundAxis(x.Shape, axis, out outer, out size, out inner);
            var result = new long[outer * inner];
            for (int o = 0; o < outer; o++)
                for (int i = 0; i < inner; i++)
                {
                    int start = o * size * inner + i, best = 0;
                    double bestValue = x.Get(start);
                    for (int s = 1; s < size; s++)
                    {
                        double v = x.Get(start + s * inner);
                        if (v > bestValue || (last && v == bestValue)) { best = s; bestValue = v; }
                    }
                    result[o * inner + i] = best;
                }
            var shape = new System.Collections.Generic.List<int>(x.Shape);
            if (keep) shape[axis] = 1; else shape.RemoveAt(axis);
            return new Tensor(shape.ToArray(), result);
        }

        /// <summary>ONNX Multinomial: rows of unnormalised log-probabilities [B, C] -> sampled indices [B, n].</summary>
        Tensor Multinomial(OnnxNode node, Tensor x)
        {
            int samples = (int)node.Int("sample_size", 1), batch = x.Shape[0], classes = x.Shape[1];
            var src = x.AsFloats();
            var result = new long[Tensor.Count(new[] { batch, samples })];
            var cdf = new double[classes];
            for (int b = 0; b < batch; b++)
            {
                float max = float.NegativeInfinity;
                for (int c = 0; c < classes; c++) max = Math.Max(max, src[b * classes + c]);
                double total = 0;
                for (int c = 0; c < classes; c++) cdf[c] = total += Math.Exp(src[b * classes + c] - max);
                for (int s = 0; s < samples; s++)
                {
                    double r = m_Random.NextDouble() * total;
                    int pick = classes - 1;
                    for (int c = 0; c < classes; c++) if (cdf[c] > r) { pick = c; break; }
                    result[b * samples + s] = pick;
                }
            }
            return new Tensor(new[] { batch, samples }, result);
        }

        Tensor RandomNormalLike(OnnxNode node, Tensor x)
        {
            float mean = node.Float("mean", 0f), scale = node.Float("scale", 1f);
            var dst = new float[x.Length];
            for (int i = 0; i < dst.Length; i++)
            {
                // Box-Muller on (0, 1] uniforms.
                double u1 = 1.0 - m_Random.NextDouble(), u2 = m_Random.NextDouble();
                dst[i] = mean + scale * (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2));
            }
            return new Tensor(x.Shape, dst);
        }

        static Tensor Constant(OnnxNode node)
        {
            OnnxAttribute a;
            if (node.Attributes.TryGetValue("value", out a)) return a.T;
            if (node.Attributes.TryGetValue("value_float", out a)) return new Tensor(new int[0], new[] { a.F });
            if (node.Attributes.TryGetValue("value_int", out a)) return new Tensor(new int[0], new[] { a.I });
            if (node.Attributes.TryGetValue("value_floats", out a)) return new Tensor(new[] { a.Floats.Count }, a.Floats.ToArray());
            if (node.Attributes.TryGetValue("value_ints", out a)) return new Tensor(new[] { a.Ints.Count }, a.Ints.ToArray());
            throw new OnnxModelException("Constant node '" + node.Name + "' has no value attribute this evaluator reads");
        }
    }
}
