// Element-wise operators of the engine-free evaluator (ONNX opset <= 15 semantics): the binary Add, Sub, Mul, Div
// and Pow with numpy-style broadcasting, and the unary ones.
//
// Binary operators are chosen by a BinaryOp value outside the inner loops: equal shapes, a scalar operand and
// row-wise broadcasting (a row, or one value per row, against each row: bias adds, LayerNorm) each run one tight loop
// per operator; only other broadcasts walk the output with an odometer. Relu and Neg, the common unary operators
// without a Math call, have their own loops; the others apply a delegate per element.
using System;

namespace Unimarl.Core
{
    public sealed partial class OnnxEvaluator
    {
        enum BinaryOp { Add, Sub, Mul, Div, Pow }

        static float Apply(BinaryOp op, float a, float b)
        {
            switch (op)
            {
                case BinaryOp.Add: return a + b;
                case BinaryOp.Sub: return a - b;
                case BinaryOp.Mul: return a * b;
                case BinaryOp.Div: return a / b;
                default: return b == 2f ? a * a : (float)Math.Pow(a, b);
            }
        }

        static long Apply(BinaryOp op, long a, long b)
        {
            switch (op)
            {
                case BinaryOp.Add: return a + b;
                case BinaryOp.Sub: return a - b;
                case BinaryOp.Mul: return a * b;
                case BinaryOp.Div: return a / b;
                default: return (long)Math.Pow(a, b);
            }
        }

        /// <summary>dst[o + i] = a[ia + i] op b[ib + i * bStep] for i &lt; count (bStep 0: one b value for all).</summary>
        static void ApplySpan(BinaryOp op, float[] a, int ia, float[] b, int ib, int bStep, float[] dst, int o, int count)
        {
            int end = o + count;
            if (bStep == 0)
            {
                float s = b[ib];
                switch (op)
                {
                    case BinaryOp.Add: for (; o < end; o++, ia++) dst[o] = a[ia] + s; return;
                    case BinaryOp.Sub: for (; o < end; o++, ia++) dst[o] = a[ia] - s; return;
                    case BinaryOp.Mul: for (; o < end; o++, ia++) dst[o] = a[ia] * s; return;
                    case BinaryOp.Div: for (; o < end; o++, ia++) dst[o] = a[ia] / s; return;
                }
            }
            else if (bStep == 1)
            {
                switch (op)
                {
                    case BinaryOp.Add: for (; o < end; o++, ia++, ib++) dst[o] = a[ia] + b[ib]; return;
                    case BinaryOp.Sub: for (; o < end; o++, ia++, ib++) dst[o] = a[ia] - b[ib]; return;
                    case BinaryOp.Mul: for (; o < end; o++, ia++, ib++) dst[o] = a[ia] * b[ib]; return;
                    case BinaryOp.Div: for (; o < end; o++, ia++, ib++) dst[o] = a[ia] / b[ib]; return;
                }
            }
            for (; o < end; o++, ia++, ib += bStep) dst[o] = Apply(op, a[ia], b[ib]);
        }

        static Tensor Unary(Tensor x, Func<float, float> f)
        {
            var src = x.AsFloats();
            var dst = new float[src.Length];
            for (int i = 0; i < src.Length; i++) dst[i] = f(src[i]);
            return new Tensor(x.Shape, dst);
        }

        static Tensor Relu(Tensor x)
        {
            var src = x.AsFloats();
            var dst = new float[src.Length];
            for (int i = 0; i < src.Length; i++)
            {
                float v = src[i];
                dst[i] = v > 0f ? v : 0f;
            }
            return new Tensor(x.Shape, dst);
        }

        static Tensor Neg(Tensor x)
        {
            var src = x.AsFloats();
            var dst = new float[src.Length];
            for (int i = 0; i < src.Length; i++) dst[i] = -src[i];
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

        static Tensor Binary(Tensor a, Tensor b, BinaryOp op)
        {
            if (a.IsInt && b.IsInt)
            {
                var shapeI = BroadcastShape(a.Shape, b.Shape);
                var outI = new long[Tensor.Count(shapeI)];
                long[] xa = a.Ints, xb = b.Ints;
                ForEachBroadcast(shapeI, BroadcastStrides(a.Shape, shapeI), BroadcastStrides(b.Shape, shapeI),
                    (k, i, j) => outI[k] = Apply(op, xa[i], xb[j]));
                return new Tensor(shapeI, outI);
            }
            float[] fa = a.AsFloats(), fb = b.AsFloats();
            if (fb.Length == 1 && a.Rank >= b.Rank)
            {
                var dst = new float[fa.Length];
                ApplySpan(op, fa, 0, fb, 0, 0, dst, 0, dst.Length);
                return new Tensor(a.Shape, dst);
            }
            var shape = BroadcastShape(a.Shape, b.Shape);
            var result = new float[Tensor.Count(shape)];
            if (fa.Length == result.Length && fb.Length == result.Length)
            {
                ApplySpan(op, fa, 0, fb, 0, 1, result, 0, result.Length);
                return new Tensor(shape, result);
            }
            int[] sa = BroadcastStrides(a.Shape, shape), sb = BroadcastStrides(b.Shape, shape);
            int last = shape.Length - 1;
            if (last >= 0 && sa[last] == 1 && (sb[last] == 1 || sb[last] == 0))
            {
                // Row-wise: rows of a against a row (or one value per row) of b, e.g. LayerNorm and bias adds.
                int width = shape[last], rows = result.Length / Math.Max(width, 1);
                var rowA = new int[rows];
                var rowB = new int[rows];
                int[] rowShape = (int[])shape.Clone();
                rowShape[last] = 1;
                ForEachBroadcast(rowShape, sa, sb, (r, i, j) => { rowA[r] = i; rowB[r] = j; });
                for (int r = 0; r < rows; r++) ApplySpan(op, fa, rowA[r], fb, rowB[r], sb[last], result, r * width, width);
                return new Tensor(shape, result);
            }
            ForEachBroadcast(shape, sa, sb, (k, i, j) => result[k] = Apply(op, fa[i], fb[j]));
            return new Tensor(shape, result);
        }
    }
}
