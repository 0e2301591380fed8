// Arithmetic, linear-algebra, reduction and sampling operators of the engine-free evaluator (ONNX opset <= 15
// semantics; numpy-style broadcasting for the element-wise binary operators).
using System;

namespace Unimarl.Core
{
    public sealed partial class OnnxEvaluator
    {
        static Tensor Unary(Tensor x, Func<float, float> f)
        {
            var src = x.AsFloats();
            var dst = new float[src.Length];
            for (int i = 0; i < src.Length; i++) dst[i] = f(src[i]);
            return new Tensor(x.Shape, dst);
        }

        static int[] BroadcastShape(int[] a, int[] b)
        {
            int rank = Math.Max(a.Length, b.Length);
            var shape = new int[rank];
            for (int i = 0; i < rank; i++)
            {
                int da = i - rank + a.Length >= 0 ? a[i - rank + a.Length] : 1;
                int db = i - rank + b.Length >= 0 ? b[i - rank + b.Length] : 1;
                if (da != db && da != 1 && db != 1)
                    throw new ArgumentException("shapes cannot broadcast: dim " + da + " vs " + db);
                shape[i] = da == 1 ? db : da;
            }
            return shape;
        }

        /// <summary>Strides of <paramref name="shape"/> aligned right to <paramref name="outShape"/>, 0 where broadcast.</summary>
        static int[] BroadcastStrides(int[] shape, int[] outShape)
        {
            var own = Tensor.Strides(shape);
            var strides = new int[outShape.Length];
            for (int i = 0; i < outShape.Length; i++)
            {
                int j = i - outShape.Length + shape.Length;
                strides[i] = j >= 0 && shape[j] != 1 ? own[j] : 0;
            }
            return strides;
        }

        /// <summary>Source offsets of each output element into a and b (odometer over the output shape).</summary>
        static void ForEachBroadcast(int[] outShape, int[] sa, int[] sb, Action<int, int, int> body)
        {
            int n = Tensor.Count(outShape), rank = outShape.Length;
            var index = new int[rank];
            int ia = 0, ib = 0;
            for (int k = 0; k < n; k++)
            {
                body(k, ia, ib);
                for (int d = rank - 1; d >= 0; d--)
                {
                    index[d]++;
                    ia += sa[d];
                    ib += sb[d];
                    if (index[d] < outShape[d]) break;
                    ia -= sa[d] * outShape[d];
                    ib -= sb[d] * outShape[d];
                    index[d] = 0;
                }
            }
        }

        static Tensor Binary(Tensor a, Tensor b, Func<float, float, float> f, Func<long, long, long> g)
        {
            if (a.IsInt && b.IsInt)
            {
                var shapeI = BroadcastShape(a.Shape, b.Shape);
                var outI = new long[Tensor.Count(shapeI)];
                long[] xa = a.Ints, xb = b.Ints;
                ForEachBroadcast(shapeI, BroadcastStrides(a.Shape, shapeI), BroadcastStrides(b.Shape, shapeI),
                    (k, i, j) => outI[k] = g(xa[i], xb[j]));
                return new Tensor(shapeI, outI);
            }
            float[] fa = a.AsFloats(), fb = b.AsFloats();
            if (fb.Length == 1 && a.Rank >= b.Rank)
            {
                var dst = new float[fa.Length];
                float s = fb[0];
                for (int i = 0; i < dst.Length; i++) dst[i] = f(fa[i], s);
                return new Tensor(a.Shape, dst);
            }
            var shape = BroadcastShape(a.Shape, b.Shape);
            var result = new float[Tensor.Count(shape)];
            if (fa.Length == result.Length && fb.Length == result.Length)
            {
                for (int i = 0; i < result.Length; i++) result[i] = f(fa[i], fb[i]);
                return new Tensor(shape, result);
            }
            int[] sa = BroadcastStrides(a.Shape, shape), sb = BroadcastStrides(b.Shape, shape);
            int last = shape.Length - 1;
            if (last >= 0 && sa[last] == 1 && (sb[last] == 1 || sb[last] == 0))
            {
                // Row-wise: rows of a against a row (or one value per row) of b, e.g. LayerNorm and bias adds.
                int width = shape[last], rows = result.Length / Math.Max(width, 1), bStep = sb[last];
                var rowA = new int[rows];
                var rowB = new int[rows];
                int[] rowShape = (int[])shape.Clone();
                rowShape[last] = 1;
                ForEachBroadcast(rowShape, sa, sb, (r, i, j) => { rowA[r] = i; rowB[r] = j; });
                for (int r = 0; r < rows; r++)
                    for (int c = 0, o = r * width; c < width; c++, o++) result[o] = f(fa[rowA[r] + c], fb[rowB[r] + c * bStep]);
                return new Tensor(shape, result);
            }
            ForEachBroadcast(shape, sa, sb, (k, i, j) => result[k] = f(fa[i], fb[j]));
            return new Tensor(shape, result);
        }

        static Tensor Clip(OnnxNode node, Tensor[] x)
        {
            // Opset 11+: min and max are optional inputs; before, attributes.
            float lo = x.Length > 1 && x[1] != null ? (float)x[1].Get(0) : node.Float("min", float.NegativeInfinity);
            float hi = x.Length > 2 && x[2] != null ? (float)x[2].Get(0) : node.Float("max", float.PositiveInfinity);
            return Unary(x[0], a => a < lo ? lo : a > hi ? hi : a);
        }

        static Tensor Gemm(OnnxNode node, Tensor[] x)
        {
            Tensor a = x[0], b = x[1];
            bool ta = node.Int("transA", 0) != 0, tb = node.Int("transB", 0) != 0;
            float alpha = node.Float("alpha", 1f), beta = node.Float("beta", 1f);
            int m = ta ? a.Shape[1] : a.Shape[0], k = ta ? a.Shape[0] : a.Shape[1];
            int n = tb ? b.Shape[0] : b.Shape[1];
            if ((tb ? b.Shape[1] : b.Shape[0]) != k)
                throw new ArgumentException("Gemm inner dims differ: " + a.ShapeString() + " x " + b.ShapeString());
            float[] fa = a.AsFloats(), fb = b.AsFloats();
            var y = new float[m * n];
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    float sum = 0f;
                    if (!ta && tb)  // Linear layers: x [m, k] times W [n, k]^T, both rows contiguous
                    {
                        int ra = i * k, rb = j * k;
                        for (int p = 0; p < k; p++) sum += fa[ra + p] * fb[rb + p];
                    }
                    else
                        for (int p = 0; p < k; p++)
                            sum += fa[ta ? p * m + i : i * k + p] * fb[tb ? j * k + p : p * n + j];
                    y[i * n + j] = alpha * sum;
                }
            var result = new Tensor(new[] { m, n }, y);
            if (x.Length > 2 && x[2] != null && beta != 0f)
            {
                var c = beta == 1f ? x[2] : Unary(x[2], v => beta * v);
                result = Binary(result, c, (p, q) => p + q, (p, q) => p + q);
            }
            return result;
        }

        static Tensor MatMul(Tensor a, Tensor b)
        {
            if (a.Rank < 2 || b.Rank != 2)
                throw new ArgumentException("MatMul supports [..., M, K] x [K, N], got " + a.ShapeString() + " x " + b.ShapeString());
            int k = a.Shape[a.Rank - 1], n = b.Shape[1];
            if (b.Shape[0] != k) throw new ArgumentException("MatMul inner dims differ: " + a.ShapeString() + " x " + b.ShapeString());
            int rows = a.Length / k;
            float[] fa = a.AsFloats(), fb = b.AsFloats();
            var y = new float[rows * n];
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < n; j++)
                {
                    float sum = 0f;
                    for (int p = 0; p < k; p++) sum += fa[i * k + p] * fb[p * n + j];
                    y[i * n + j] = sum;
                }
            var shape = (int[])a.Shape.Clone();
            shape[shape.Length - 1] = n;
            return new Tensor(shape, y);
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
            var result = new long[batch * samples];
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
