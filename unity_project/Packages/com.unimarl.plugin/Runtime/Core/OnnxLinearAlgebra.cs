// Gemm and MatMul of the engine-free evaluator (ONNX opset <= 15 semantics).
//
// Both reduce to one kernel: Y[i, j] = sum_p A[i, p] * Bt[j, p], with A [M, K] and Bt [N, K] row-major, so every
// inner loop walks two contiguous rows. The kernel computes a 4 x 4 block of outputs per pass (16 running sums:
// each loaded value is used four times), with 1 x 4 and 4 x 1 / 1 x 1 passes for the edges. Each sum still adds
// its products in order p = 0 .. K-1, as a plain dot product would.
// Gemm with transB = 1 (how linear layers are exported) already has B in that layout. A constant B in the other
// layout (MatMul, Gemm with transB = 0, B an initializer) is transposed once when the evaluator is built and kept
// per node; a B that is fed at run time, or that overrides its initializer, is transposed per call.
using System;
using System.Collections.Generic;

namespace Unimarl.Core
{
    public sealed partial class OnnxEvaluator
    {
        /// <summary>Per MatMul / Gemm node with a constant, not yet transposed B: the initializer and B transposed to
        /// [N, K]. Filled by the constructor only, read-only afterwards.</summary>
        readonly Dictionary<OnnxNode, KeyValuePair<Tensor, float[]>> m_TransposedWeights =
            new Dictionary<OnnxNode, KeyValuePair<Tensor, float[]>>();

        /// <summary>Load time: transposes the constant B of MatMul and transB = 0 Gemm nodes once.</summary>
        void PrepareWeights(OnnxNode node)
        {
            bool matMul = node.OpType == "MatMul";
            if (!matMul && (node.OpType != "Gemm" || node.Int("transB", 0) != 0)) return;
            Tensor b;
            if (node.Input(1) == null || !m_Model.Initializers.TryGetValue(node.Input(1), out b)) return;
            if (b.IsInt || b.Rank != 2) return;  // left to the run-time checks, which name the problem
            m_TransposedWeights[node] = new KeyValuePair<Tensor, float[]>(b, Transpose(b.Floats, b.Shape[0], b.Shape[1]));
        }

        /// <summary>B [K, N] as Bt [N, K]: the prepared copy when <paramref name="b"/> is the node's initializer.</summary>
        float[] TransposedB(OnnxNode node, Tensor b)
        {
            KeyValuePair<Tensor, float[]> cached;
            if (m_TransposedWeights.TryGetValue(node, out cached) && ReferenceEquals(cached.Key, b)) return cached.Value;
            return Transpose(b.AsFloats(), b.Shape[0], b.Shape[1]);
        }

        static float[] Transpose(float[] src, int rows, int cols)
        {
            var dst = new float[Tensor.Count(new[] { rows, cols })];
            Transpose(src, rows, cols, dst);
            return dst;
        }

        /// <summary>src [rows, cols] (the first rows * cols values) into dst as [cols, rows].</summary>
        static void Transpose(float[] src, int rows, int cols, float[] dst)
        {
            for (int r = 0; r < rows; r++)
                for (int c = 0, s = r * cols, d = r; c < cols; c++, s++, d += rows) dst[d] = src[s];
        }

        Tensor Gemm(OnnxNode node, Tensor[] x)
        {
            Tensor a = x[0], b = x[1];
            if (a.Rank != 2 || b.Rank != 2)
                throw new ArgumentException("Gemm needs 2-D A and B, got " + a.ShapeString() + " x " + b.ShapeString());
            bool ta = node.Int("transA", 0) != 0, tb = node.Int("transB", 0) != 0;
            float alpha = node.Float("alpha", 1f), beta = node.Float("beta", 1f);
            int m = ta ? a.Shape[1] : a.Shape[0], k = ta ? a.Shape[0] : a.Shape[1];
            int n = tb ? b.Shape[0] : b.Shape[1];
            if ((tb ? b.Shape[1] : b.Shape[0]) != k)
                throw new ArgumentException("Gemm inner dims differ: " + a.ShapeString() + " x " + b.ShapeString());
            float[] fa = ta ? Transpose(a.AsFloats(), k, m) : a.AsFloats();
            float[] bt = tb ? b.AsFloats() : TransposedB(node, b);
            var y = new float[Tensor.Count(new[] { m, n })];
            DotRows(fa, 0, m, k, bt, n, y, 0);
            if (alpha != 1f)
                for (int i = 0; i < y.Length; i++) y[i] = alpha * y[i];
            var result = new Tensor(new[] { m, n }, y);
            Tensor c = x.Length > 2 ? x[2] : null;
            if (c == null || beta == 0f) return result;
            if (beta == 1f && !c.IsInt && AddBiasInPlace(y, m, n, c)) return result;
            return Binary(result, beta == 1f ? c : Unary(c, v => beta * v), BinaryOp.Add);
        }

        /// <summary>y [m, n] += c for the usual bias shapes (scalar, [n], [1, n], [m, n]); false for any other.</summary>
        static bool AddBiasInPlace(float[] y, int m, int n, Tensor c)
        {
            float[] fc = c.Floats;
            if (fc.Length == 1 && c.Rank <= 2)
            {
                float s = fc[0];
                for (int i = 0; i < y.Length; i++) y[i] += s;
                return true;
            }
            bool row = (c.Rank == 1 && c.Shape[0] == n) || (c.Rank == 2 && c.Shape[0] == 1 && c.Shape[1] == n);
            if (row)
            {
                for (int i = 0, o = 0; i < m; i++)
                    for (int j = 0; j < n; j++, o++) y[o] += fc[j];
                return true;
            }
            if (c.Rank == 2 && c.Shape[0] == m && c.Shape[1] == n)
            {
                for (int i = 0; i < y.Length; i++) y[i] += fc[i];
                return true;
            }
            return false;
        }

        Tensor MatMul(OnnxNode node, Tensor a, Tensor b)
        {
            if (a.Rank < 2 || b.Rank != 2)
                throw new ArgumentException("MatMul supports [..., M, K] x [K, N], got " + a.ShapeString() + " x " + b.ShapeString());
            int k = a.Shape[a.Rank - 1], n = b.Shape[1];
            if (b.Shape[0] != k) throw new ArgumentException("MatMul inner dims differ: " + a.ShapeString() + " x " + b.ShapeString());
            int rows = a.Length / Math.Max(k, 1);
            var y = new float[Tensor.Count(new[] { rows, n })];
            DotRows(a.AsFloats(), 0, rows, k, TransposedB(node, b), n, y, 0);
            var shape = (int[])a.Shape.Clone();
            shape[shape.Length - 1] = n;
            return new Tensor(shape, y);
        }

        /// <summary>y[yOffset + i * n + j] = sum_p a[aOffset + i * k + p] * bt[j * k + p] for i &lt; m, j &lt; n.</summary>
        static void DotRows(float[] a, int aOffset, int m, int k, float[] bt, int n, float[] y, int yOffset)
        {
            int i = 0;
            for (; i + 4 <= m; i += 4)
            {
                int j = 0, ra = aOffset + i * k, o = yOffset + i * n;
                for (; j + 4 <= n; j += 4) Dot4x4(a, ra, bt, j * k, k, y, o + j, n);
                for (; j < n; j++) Dot4x1(a, ra, bt, j * k, k, y, o + j, n);
            }
            for (; i < m; i++)
            {
                int j = 0, ra = aOffset + i * k, o = yOffset + i * n;
                for (; j + 4 <= n; j += 4) Dot1x4(a, ra, bt, j * k, k, y, o + j);
                for (; j < n; j++)
                {
                    float s = 0f;
                    for (int p = 0, rb = j * k; p < k; p++) s += a[ra + p] * bt[rb + p];
                    y[o + j] = s;
                }
            }
        }

        /// <summary>Four rows of a (from <paramref name="ra"/>, stride k) against four rows of bt (from rb).</summary>
        static void Dot4x4(float[] a, int ra, float[] bt, int rb, int k, float[] y, int o, int n)
        {
            float s00 = 0f, s01 = 0f, s02 = 0f, s03 = 0f, s10 = 0f, s11 = 0f, s12 = 0f, s13 = 0f;
            float s20 = 0f, s21 = 0f, s22 = 0f, s23 = 0f, s30 = 0f, s31 = 0f, s32 = 0f, s33 = 0f;
            int a1 = k, a2 = a1 + k, a3 = a2 + k, b1 = k, b2 = 2 * k, b3 = 3 * k;
            for (int p = 0; p < k; p++)
            {
                int pa = ra + p, pb = rb + p;
                float x0 = a[pa], x1 = a[pa + a1], x2 = a[pa + a2], x3 = a[pa + a3];
                float w0 = bt[pb], w1 = bt[pb + b1], w2 = bt[pb + b2], w3 = bt[pb + b3];
                s00 += x0 * w0; s01 += x0 * w1; s02 += x0 * w2; s03 += x0 * w3;
                s10 += x1 * w0; s11 += x1 * w1; s12 += x1 * w2; s13 += x1 * w3;
                s20 += x2 * w0; s21 += x2 * w1; s22 += x2 * w2; s23 += x2 * w3;
                s30 += x3 * w0; s31 += x3 * w1; s32 += x3 * w2; s33 += x3 * w3;
            }
            y[o] = s00; y[o + 1] = s01; y[o + 2] = s02; y[o + 3] = s03;
            o += n;
            y[o] = s10; y[o + 1] = s11; y[o + 2] = s12; y[o + 3] = s13;
            o += n;
            y[o] = s20; y[o + 1] = s21; y[o + 2] = s22; y[o + 3] = s23;
            o += n;
            y[o] = s30; y[o + 1] = s31; y[o + 2] = s32; y[o + 3] = s33;
        }

        /// <summary>Four rows of a against one row of bt; outputs y[o], y[o + n], y[o + 2n], y[o + 3n].</summary>
        static void Dot4x1(float[] a, int ra, float[] bt, int rb, int k, float[] y, int o, int n)
        {
            float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
            for (int p = 0; p < k; p++)
            {
                float w = bt[rb + p];
                int pa = ra + p;
                s0 += a[pa] * w; s1 += a[pa + k] * w; s2 += a[pa + 2 * k] * w; s3 += a[pa + 3 * k] * w;
            }
            y[o] = s0; y[o + n] = s1; y[o + 2 * n] = s2; y[o + 3 * n] = s3;
        }

        /// <summary>One row of a against four rows of bt; outputs y[o .. o + 3].</summary>
        static void Dot1x4(float[] a, int ra, float[] bt, int rb, int k, float[] y, int o)
        {
            float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
            int r1 = rb + k, r2 = r1 + k, r3 = r2 + k;
            for (int p = 0; p < k; p++)
            {
                float v = a[ra + p];
                s0 += v * bt[rb + p]; s1 += v * bt[r1 + p]; s2 += v * bt[r2 + p]; s3 += v * bt[r3 + p];
            }
            y[o] = s0; y[o + 1] = s1; y[o + 2] = s2; y[o + 3] = s3;
        }
    }
}
