// ONNX Conv (opset <= 15) for 2-D inputs of the engine-free evaluator: X [N, C, H, W], W [M, C / group, kH, kW],
// optional bias B [M]; attributes kernel_shape, strides, pads (explicit) or auto_pad (NOTSET, VALID, SAME_UPPER,
// SAME_LOWER), dilations and group (any group count that divides C and M).
//
// Each image is unrolled once per group into a column matrix [C/group * kH * kW, OH * OW] (im2col), transposed to
// one row of taps per output pixel; the output planes are then the weight rows dotted with those rows by the
// blocked kernel of Gemm (OnnxLinearAlgebra.cs), plus the bias. Buffers are allocated once per call, never per
// element.
using System;
using System.Collections.Generic;
using System.Text;

namespace Unimarl.Core
{
    public sealed partial class OnnxEvaluator
    {
        static readonly HashSet<string> AutoPads = new HashSet<string> { "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER" };

        /// <summary>Geometry of one Conv call: sizes, strides, dilations and the leading (top, left) pads.</summary>
        struct ConvGeometry
        {
            public int N, C, H, W, M, Group, KH, KW, SH, SW, DH, DW, PadTop, PadLeft, OH, OW;
        }

        static string AutoPad(OnnxNode node)
        {
            OnnxAttribute a;
            return node.Attributes.TryGetValue("auto_pad", out a) ? Encoding.UTF8.GetString(a.S) : "NOTSET";
        }

        /// <summary>Load-time checks of a Conv node's attributes (and of its weight when it is an initializer):
        /// throws OnnxModelException naming the node and the value the evaluator cannot run.</summary>
        void CheckConv(OnnxNode node)
        {
            string where = "Conv node '" + node.Name + "' ";
            string autoPad = AutoPad(node);
            if (!AutoPads.Contains(autoPad))
                throw new OnnxModelException(where + "has auto_pad '" + autoPad + "'; the evaluator supports NOTSET, VALID, " +
                    "SAME_UPPER and SAME_LOWER");
            if (autoPad != "NOTSET" && node.Ints("pads") != null)
                throw new OnnxModelException(where + "gives both pads and auto_pad " + autoPad + "; ONNX allows only one of them");
            long group = node.Int("group", 1);
            if (group < 1)
                throw new OnnxModelException(where + "has group " + group + "; group must be at least 1");
            CheckInts(where, "kernel_shape", node.Ints("kernel_shape"), 2, 1);
            CheckInts(where, "strides", node.Ints("strides"), 2, 1);
            CheckInts(where, "dilations", node.Ints("dilations"), 2, 1);
            CheckInts(where, "pads", node.Ints("pads"), 4, 0);
            Tensor weight;
            if (node.Input(1) == null || !m_Model.Initializers.TryGetValue(node.Input(1), out weight)) return;
            if (weight.Rank != 4)
                throw new OnnxModelException(where + "has a weight of shape " + weight.ShapeString() + "; the evaluator " +
                    "supports 2-D convolutions only (weight [M, C / group, kH, kW])");
            if (weight.Shape[0] % group != 0)
                throw new OnnxModelException(where + "has " + weight.Shape[0] + " output channels, not a multiple of group " + group);
        }

        static void CheckInts(string where, string name, List<long> values, int count, long min)
        {
            if (values == null) return;
            if (values.Count != count)
                throw new OnnxModelException(where + "has " + name + " of length " + values.Count + "; the evaluator supports " +
                    "2-D convolutions only (" + count + " values)");
            foreach (long v in values)
                if (v < min)
                    throw new OnnxModelException(where + "has " + name + " value " + v + "; each must be at least " + min);
        }

        static ConvGeometry ConvShape(OnnxNode node, Tensor x, Tensor w)
        {
            if (x.Rank != 4 || w.Rank != 4)
                throw new ArgumentException("Conv supports 2-D inputs [N, C, H, W] and weights [M, C / group, kH, kW], got " +
                    x.ShapeString() + " and " + w.ShapeString());
            var g = new ConvGeometry
            {
                N = x.Shape[0], C = x.Shape[1], H = x.Shape[2], W = x.Shape[3], M = w.Shape[0],
                Group = (int)node.Int("group", 1), KH = w.Shape[2], KW = w.Shape[3],
            };
            if (g.C % g.Group != 0 || w.Shape[1] * g.Group != g.C || g.M % g.Group != 0)
                throw new ArgumentException("Conv input " + x.ShapeString() + " and weight " + w.ShapeString() +
                    " do not fit group " + g.Group);
            var kernel = node.Ints("kernel_shape");
            if (kernel != null && (kernel[0] != g.KH || kernel[1] != g.KW))
                throw new ArgumentException("Conv kernel_shape [" + kernel[0] + ", " + kernel[1] + "] differs from weight " + w.ShapeString());
            var strides = node.Ints("strides");
            var dilations = node.Ints("dilations");
            g.SH = strides == null ? 1 : (int)strides[0];
            g.SW = strides == null ? 1 : (int)strides[1];
            g.DH = dilations == null ? 1 : (int)dilations[0];
            g.DW = dilations == null ? 1 : (int)dilations[1];
            string autoPad = AutoPad(node);
            var pads = node.Ints("pads");
            ConvAxis(autoPad, g.H, g.KH, g.SH, g.DH, pads == null ? 0 : (int)pads[0], pads == null ? 0 : (int)pads[2],
                out g.PadTop, out g.OH);
            ConvAxis(autoPad, g.W, g.KW, g.SW, g.DW, pads == null ? 0 : (int)pads[1], pads == null ? 0 : (int)pads[3],
                out g.PadLeft, out g.OW);
            if (g.OH < 1 || g.OW < 1)
                throw new ArgumentException("Conv output would be empty: input " + x.ShapeString() + ", weight " + w.ShapeString());
            return g;
        }

        /// <summary>Leading pad and output size along one spatial axis (ONNX Conv's auto_pad rules).</summary>
        static void ConvAxis(string autoPad, int size, int kernel, int stride, int dilation, int begin, int end,
            out int padBegin, out int outSize)
        {
            int extent = (kernel - 1) * dilation + 1;
            if (autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER")
            {
                outSize = (size + stride - 1) / stride;
                int total = Math.Max(0, (outSize - 1) * stride + extent - size);
                padBegin = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2;
                return;
            }
            if (autoPad == "VALID") begin = end = 0;
            padBegin = begin;
            int span = size + begin + end - extent;
            outSize = span < 0 ? 0 : span / stride + 1;
        }

        static Tensor Conv(OnnxNode node, Tensor[] x)
        {
            Tensor input = x[0], weight = x[1], bias = x.Length > 2 ? x[2] : null;
            var g = ConvShape(node, input, weight);
            float[] src = input.AsFloats(), wt = weight.AsFloats(), b = bias == null ? null : bias.AsFloats();
            if (b != null && b.Length != g.M)
                throw new ArgumentException("Conv bias " + bias.ShapeString() + " does not have " + g.M + " values");
            int cg = g.C / g.Group, mg = g.M / g.Group, k = cg * g.KH * g.KW, plane = g.OH * g.OW;
            var columns = new float[Tensor.Count(new[] { k, plane })];
            var pixels = new float[columns.Length];
            var dst = new float[Tensor.Count(new[] { g.N, g.M, plane })];
            for (int n = 0; n < g.N; n++)
                for (int group = 0; group < g.Group; group++)
                {
                    Im2Col(src, (n * g.C + group * cg) * g.H * g.W, cg, g, columns);
                    Transpose(columns, k, plane, pixels);
                    int m0 = group * mg, o = (n * g.M + m0) * plane;
                    DotRows(wt, m0 * k, mg, k, pixels, plane, dst, o);
                    if (b == null) continue;
                    for (int m = 0; m < mg; m++, o += plane)
                    {
                        float bm = b[m0 + m];
                        for (int p = o, end = o + plane; p < end; p++) dst[p] += bm;
                    }
                }
            return new Tensor(new[] { g.N, g.M, g.OH, g.OW }, dst);
        }

        /// <summary>Unrolls <paramref name="channels"/> input planes starting at <paramref name="offset"/> into
        /// columns [channels * kH * kW, OH * OW]: row r holds tap r of every output pixel (0 in the padding).</summary>
        static void Im2Col(float[] src, int offset, int channels, ConvGeometry g, float[] columns)
        {
            int plane = g.OH * g.OW, row = 0;
            for (int c = 0; c < channels; c++)
                for (int kh = 0; kh < g.KH; kh++)
                    for (int kw = 0; kw < g.KW; kw++, row++)
                    {
                        int shiftW = kw * g.DW - g.PadLeft;
                        // Output columns whose input column ow * SW + shiftW lies inside [0, W).
                        int lo = shiftW >= 0 ? 0 : (-shiftW + g.SW - 1) / g.SW;
                        int hi = g.W - 1 - shiftW < 0 ? 0 : Math.Min(g.OW, (g.W - 1 - shiftW) / g.SW + 1);
                        for (int oh = 0; oh < g.OH; oh++)
                        {
                            int ih = oh * g.SH + kh * g.DH - g.PadTop, o = row * plane + oh * g.OW;
                            if (ih < 0 || ih >= g.H || lo >= hi)
                            {
                                Array.Clear(columns, o, g.OW);
                                continue;
                            }
                            if (lo > 0) Array.Clear(columns, o, lo);
                            if (hi < g.OW) Array.Clear(columns, o + hi, g.OW - hi);
                            int s = offset + (c * g.H + ih) * g.W + shiftW;
                            if (g.SW == 1) Array.Copy(src, s + lo, columns, o + lo, hi - lo);
                            else
                                for (int ow = lo; ow < hi; ow++) columns[o + ow] = src[s + ow * g.SW];
                        }
                    }
        }
    }
}
