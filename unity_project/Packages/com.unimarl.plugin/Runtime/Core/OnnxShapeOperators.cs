// Shape and data-movement operators of the engine-free evaluator (ONNX opset <= 15 semantics; Squeeze,
// Unsqueeze and Split accept their axes/split both as attributes (opset < 13) and as inputs (opset 13+)).
using System;
using System.Collections.Generic;

namespace Unimarl.Core
{
    public sealed partial class OnnxEvaluator
    {
        Tensor[] ExecuteShapeOp(OnnxNode node, Tensor[] x)
        {
            switch (node.OpType)
            {
                case "Concat": return One(Concat(x, node.Int("axis", 0)));
                case "Flatten": return One(Flatten(x[0], node.Int("axis", 1)));
                case "Reshape": return One(Reshape(x[0], x[1].AsLongs()));
                case "Transpose": return One(Transpose(x[0], node.Ints("perm")));
                case "Gather": return One(Gather(x[0], x[1], node.Int("axis", 0)));
                case "Shape": return One(new Tensor(new[] { x[0].Rank }, Array.ConvertAll(x[0].Shape, d => (long)d)));
                case "Unsqueeze": return One(Unsqueeze(x[0], AxesOf(node, x)));
                case "Squeeze": return One(Squeeze(x[0], AxesOf(node, x)));
                case "Slice": return One(Slice(x));
                case "Split": return Split(node, x);
                case "Cast": return One(Cast(x[0], (int)node.Int("to", OnnxModel.Float)));
                default: throw new OnnxModelException("operator '" + node.OpType + "' is not implemented");
            }
        }

        static List<long> AxesOf(OnnxNode node, Tensor[] x)
        {
            if (x.Length > 1 && x[1] != null) return new List<long>(x[1].AsLongs());
            return node.Ints("axes") ?? new List<long>();
        }

        static Tensor WithShape(Tensor x, int[] shape)
        {
            return x.IsInt ? new Tensor(shape, x.Ints) : new Tensor(shape, x.Floats);
        }

        static Tensor Concat(Tensor[] parts, long axisAttr)
        {
            var first = parts[0];
            int axis = Axis(axisAttr, first.Rank), outer, size, inner;
            var shape = (int[])first.Shape.Clone();
            shape[axis] = 0;
            foreach (var p in parts) shape[axis] += p.Shape[axis];
            AroundAxis(shape, axis, out outer, out size, out inner);
            bool ints = first.IsInt;
            var fl = ints ? null : new float[Tensor.Count(shape)];
            var il = ints ? new long[Tensor.Count(shape)] : null;
            int offset = 0;
            foreach (var p in parts)
            {
                int block = p.Shape[axis] * inner;
                for (int o = 0; o < outer; o++)
                {
                    if (ints) Array.Copy(p.Ints, o * block, il, o * size * inner + offset, block);
                    else Array.Copy(p.AsFloats(), o * block, fl, o * size * inner + offset, block);
                }
                offset += block;
            }
            return ints ? new Tensor(shape, il) : new Tensor(shape, fl);
        }

        static Tensor Flatten(Tensor x, long axisAttr)
        {
            int axis = (int)(axisAttr < 0 ? axisAttr + x.Rank : axisAttr), outer = 1;
            for (int i = 0; i < axis; i++) outer *= x.Shape[i];
            return WithShape(x, new[] { outer, x.Length / Math.Max(outer, 1) });
        }

        static Tensor Reshape(Tensor x, long[] target)
        {
            var shape = new int[target.Length];
            int known = 1, infer = -1;
            for (int i = 0; i < target.Length; i++)
            {
                shape[i] = target[i] == 0 ? x.Shape[i] : (int)target[i];
                if (target[i] == -1) infer = i; else known *= shape[i];
            }
            if (infer >= 0) shape[infer] = x.Length / Math.Max(known, 1);
            return WithShape(x, shape);
        }

        static Tensor Transpose(Tensor x, List<long> permAttr)
        {
            int rank = x.Rank;
            var perm = new int[rank];
            for (int i = 0; i < rank; i++) perm[i] = permAttr != null ? (int)permAttr[i] : rank - 1 - i;
            var shape = new int[rank];
            var src = Tensor.Strides(x.Shape);
            var strides = new int[rank];
            for (int i = 0; i < rank; i++) { shape[i] = x.Shape[perm[i]]; strides[i] = src[perm[i]]; }
            var fl = x.IsInt ? null : new float[x.Length];
            var il = x.IsInt ? new long[x.Length] : null;
            ForEachBroadcast(shape, strides, strides, (k, from, unused) =>
            {
                if (il != null) il[k] = x.Ints[from]; else fl[k] = x.Floats[from];
            });
            return il != null ? new Tensor(shape, il) : new Tensor(shape, fl);
        }

        static Tensor Gather(Tensor data, Tensor indices, long axisAttr)
        {
            int axis = Axis(axisAttr, data.Rank), outer, size, inner;
            AroundAxis(data.Shape, axis, out outer, out size, out inner);
            var idx = indices.AsLongs();
            var shape = new List<int>();
            for (int i = 0; i < axis; i++) shape.Add(data.Shape[i]);
            shape.AddRange(indices.Shape);
            for (int i = axis + 1; i < data.Rank; i++) shape.Add(data.Shape[i]);
            int n = outer * idx.Length * inner;
            var fl = data.IsInt ? null : new float[n];
            var il = data.IsInt ? new long[n] : null;
            for (int o = 0; o < outer; o++)
                for (int j = 0; j < idx.Length; j++)
                {
                    long s = idx[j] < 0 ? idx[j] + size : idx[j];
                    if (s < 0 || s >= size) throw new ArgumentException("Gather index " + idx[j] + " outside " + size);
                    int from = (int)((o * size + s) * inner), to = (o * idx.Length + j) * inner;
                    if (il != null) Array.Copy(data.Ints, from, il, to, inner);
                    else Array.Copy(data.Floats, from, fl, to, inner);
                }
            return il != null ? new Tensor(shape.ToArray(), il) : new Tensor(shape.ToArray(), fl);
        }

        static Tensor Unsqueeze(Tensor x, List<long> axes)
        {
            int rank = x.Rank + axes.Count;
            var inserted = new bool[rank];
            foreach (long a in axes) inserted[Axis(a, rank)] = true;
            var shape = new int[rank];
            for (int i = 0, j = 0; i < rank; i++) shape[i] = inserted[i] ? 1 : x.Shape[j++];
            return WithShape(x, shape);
        }

        static Tensor Squeeze(Tensor x, List<long> axes)
        {
            var shape = new List<int>();
            var drop = new bool[x.Rank];
            foreach (long a in axes) drop[Axis(a, x.Rank)] = true;
            for (int i = 0; i < x.Rank; i++)
                if (!(axes.Count == 0 ? x.Shape[i] == 1 : drop[i])) shape.Add(x.Shape[i]);
            return WithShape(x, shape.ToArray());
        }

        static Tensor Slice(Tensor[] x)
        {
            Tensor data = x[0];
            long[] starts = x[1].AsLongs(), ends = x[2].AsLongs();
            long[] axes = x.Length > 3 && x[3] != null ? x[3].AsLongs() : null;
            long[] steps = x.Length > 4 && x[4] != null ? x[4].AsLongs() : null;
            int rank = data.Rank;
            var begin = new int[rank];
            var step = new int[rank];
            var shape = (int[])data.Shape.Clone();
            for (int i = 0; i < rank; i++) step[i] = 1;
            for (int i = 0; i < starts.Length; i++)
            {
                int axis = Axis(axes != null ? axes[i] : i, rank), dim = data.Shape[axis];
                long st = steps != null ? steps[i] : 1;
                if (st == 0) throw new ArgumentException("Slice step 0");
                long s = starts[i] < 0 ? starts[i] + dim : starts[i], e = ends[i] < 0 ? ends[i] + dim : ends[i];
                s = st > 0 ? Math.Min(Math.Max(s, 0), dim) : Math.Min(Math.Max(s, 0), dim - 1);
                e = st > 0 ? Math.Min(Math.Max(e, 0), dim) : Math.Min(Math.Max(e, -1), dim - 1);
                begin[axis] = (int)s;
                step[axis] = (int)st;
                shape[axis] = (int)Math.Max(0, st > 0 ? (e - s + st - 1) / st : (s - e - st - 1) / -st);
            }
            var src = Tensor.Strides(data.Shape);
            var strides = new int[rank];
            int offset = 0;
            for (int i = 0; i < rank; i++) { strides[i] = src[i] * step[i]; offset += begin[i] * src[i]; }
            int n = Tensor.Count(shape);
            var fl = data.IsInt ? null : new float[n];
            var il = data.IsInt ? new long[n] : null;
            if (n > 0)
                ForEachBroadcast(shape, strides, strides, (k, from, unused) =>
                {
                    if (il != null) il[k] = data.Ints[offset + from]; else fl[k] = data.Floats[offset + from];
                });
            return il != null ? new Tensor(shape, il) : new Tensor(shape, fl);
        }

        static Tensor[] Split(OnnxNode node, Tensor[] x)
        {
            Tensor data = x[0];
            int axis = Axis(node.Int("axis", 0), data.Rank), outputs = node.Outputs.Count;
            long[] sizes = x.Length > 1 && x[1] != null ? x[1].AsLongs() : node.Ints("split") != null ? node.Ints("split").ToArray() : null;
            if (sizes == null)
            {
                sizes = new long[outputs];
                for (int i = 0; i < outputs; i++) sizes[i] = data.Shape[axis] / outputs;
            }
            var result = new Tensor[sizes.Length];
            long start = 0;
            var axisTensor = new Tensor(new[] { 1 }, new long[] { axis });
            for (int i = 0; i < sizes.Length; i++)
            {
                result[i] = Slice(new[] { data, new Tensor(new[] { 1 }, new[] { start }),
                    new Tensor(new[] { 1 }, new[] { start + sizes[i] }), axisTensor });
                start += sizes[i];
            }
            return result;
        }

        static Tensor Cast(Tensor x, int to)
        {
            bool toFloat = to == OnnxModel.Float || to == OnnxModel.Double || to == OnnxModel.Float16;
            if (toFloat) return new Tensor(x.Shape, x.AsFloats());
            if (to == OnnxModel.Bool)
            {
                var b = new long[x.Length];
                for (int i = 0; i < b.Length; i++) b[i] = x.Get(i) != 0 ? 1 : 0;
                return new Tensor(x.Shape, b);
            }
            return new Tensor(x.Shape, x.AsLongs());
        }
    }
}
