// An ONNX ModelProto reader, sufficient for the graphs unimarl exports (engine-free).
//
// Reads the opset imports, the graph's nodes (inputs, outputs, op type, attributes), initializers (raw_data,
// float_data, int64_data, int32_data, double_data) and the graph inputs/outputs with their static dims. Field
// numbers are those of onnx/onnx.proto3. Tensors of type FLOAT, DOUBLE and FLOAT16 become float32; INT64, INT32,
// INT8, UINT8 and BOOL become int64.
// Dims are checked before anything is allocated: a negative dim, or a shape of more than Tensor.MaxElements
// elements (initializers, constants, declared inputs and outputs), is refused with an OnnxModelException naming it.
using System;
using System.Collections.Generic;

namespace Unimarl.Core
{
    /// <summary>An ONNX model the evaluator cannot read or run.</summary>
    public class OnnxModelException : Exception
    {
        public OnnxModelException(string message) : base(message) { }
        public OnnxModelException(string message, Exception inner) : base(message, inner) { }
    }

    public sealed class OnnxAttribute
    {
        public string Name = "";
        public float F;
        public long I;
        public byte[] S = new byte[0];
        public Tensor T;
        public readonly List<float> Floats = new List<float>();
        public readonly List<long> Ints = new List<long>();
    }

    public sealed class OnnxNode
    {
        public string Name = "";
        public string OpType = "";
        public string Domain = "";
        public readonly List<string> Inputs = new List<string>();
        public readonly List<string> Outputs = new List<string>();
        public readonly Dictionary<string, OnnxAttribute> Attributes = new Dictionary<string, OnnxAttribute>();

        public long Int(string name, long fallback)
        {
            OnnxAttribute a;
            return Attributes.TryGetValue(name, out a) ? a.I : fallback;
        }

        public float Float(string name, float fallback)
        {
            OnnxAttribute a;
            return Attributes.TryGetValue(name, out a) ? a.F : fallback;
        }

        public List<long> Ints(string name)
        {
            OnnxAttribute a;
            return Attributes.TryGetValue(name, out a) ? a.Ints : null;
        }

        /// <summary>Input i, or null when absent or given as the empty name (an omitted optional input).</summary>
        public string Input(int i) { return i < Inputs.Count && Inputs[i].Length > 0 ? Inputs[i] : null; }
    }

    /// <summary>A graph input or output: name, element type and dims (-1 for a symbolic dim such as batch).</summary>
    public sealed class OnnxValueInfo
    {
        public string Name = "";
        public int ElementType;
        public readonly List<long> Dims = new List<long>();
    }

    public sealed class OnnxModel
    {
        public long IrVersion;
        public long Opset;
        public readonly List<OnnxNode> Nodes = new List<OnnxNode>();
        public readonly Dictionary<string, Tensor> Initializers = new Dictionary<string, Tensor>();
        public readonly List<OnnxValueInfo> Inputs = new List<OnnxValueInfo>();
        public readonly List<OnnxValueInfo> Outputs = new List<OnnxValueInfo>();

        public const int Float = 1, Uint8 = 2, Int8 = 3, Int32 = 6, Int64 = 7, Bool = 9, Float16 = 10, Double = 11;

        /// <summary>Parses serialized ModelProto bytes; throws OnnxModelException when they are not a model.</summary>
        public static OnnxModel Parse(byte[] bytes)
        {
            var model = new OnnxModel();
            try
            {
                var r = new ProtoReader(bytes);
                while (r.Next())
                {
                    if (r.FieldNumber == 1 && r.WireType == WireType.Varint) model.IrVersion = r.ReadInt64();
                    else if (r.FieldNumber == 7 && r.WireType == WireType.LengthDelimited) model.ReadGraph(r.ReadMessage());
                    else if (r.FieldNumber == 8 && r.WireType == WireType.LengthDelimited) model.ReadOpset(r.ReadMessage());
                    else r.Skip();
                }
            }
            catch (ProtoFormatException e)
            {
                throw new OnnxModelException("the bytes are not an ONNX model: " + e.Message, e);
            }
            if (model.Nodes.Count == 0 && model.Outputs.Count == 0)
                throw new OnnxModelException("the ONNX model has no graph");
            return model;
        }

        void ReadOpset(ProtoReader r)
        {
            string domain = "";
            long version = 0;
            while (r.Next())
            {
                if (r.FieldNumber == 1 && r.WireType == WireType.LengthDelimited) domain = r.ReadString();
                else if (r.FieldNumber == 2 && r.WireType == WireType.Varint) version = r.ReadInt64();
                else r.Skip();
            }
            if (domain == "" || domain == "ai.onnx") Opset = version;
        }

        void ReadGraph(ProtoReader r)
        {
            while (r.Next())
            {
                if (r.WireType != WireType.LengthDelimited) { r.Skip(); continue; }
                switch (r.FieldNumber)
                {
                    case 1: Nodes.Add(ReadNode(r.ReadMessage())); break;
                    case 5:
                        string name;
                        Tensor t = ReadTensor(r.ReadMessage(), out name);
                        Initializers[name] = t;
                        break;
                    case 11: Inputs.Add(ReadValueInfo(r.ReadMessage())); break;
                    case 12: Outputs.Add(ReadValueInfo(r.ReadMessage())); break;
                    default: r.Skip(); break;
                }
            }
        }

        static OnnxNode ReadNode(ProtoReader r)
        {
            var node = new OnnxNode();
            while (r.Next())
            {
                if (r.WireType != WireType.LengthDelimited) { r.Skip(); continue; }
                switch (r.FieldNumber)
                {
                    case 1: node.Inputs.Add(r.ReadString()); break;
                    case 2: node.Outputs.Add(r.ReadString()); break;
                    case 3: node.Name = r.ReadString(); break;
                    case 4: node.OpType = r.ReadString(); break;
                    case 5:
                        var a = ReadAttribute(r.ReadMessage());
                        node.Attributes[a.Name] = a;
                        break;
                    case 7: node.Domain = r.ReadString(); break;
                    default: r.Skip(); break;
                }
            }
            return node;
        }

        static OnnxAttribute ReadAttribute(ProtoReader r)
        {
            var a = new OnnxAttribute();
            while (r.Next())
            {
                switch (r.FieldNumber)
                {
                    case 1: a.Name = r.ReadString(); break;
                    case 2: a.F = r.ReadFloat(); break;
                    case 3: a.I = r.ReadInt64(); break;
                    case 4: a.S = r.ReadBytes(); break;
                    case 5: string ignored; a.T = ReadTensor(r.ReadMessage(), out ignored); break;
                    case 7: r.ReadFloats(a.Floats); break;
                    case 8: r.ReadInt64s(a.Ints); break;
                    default: r.Skip(); break;
                }
            }
            return a;
        }

        static OnnxValueInfo ReadValueInfo(ProtoReader r)
        {
            var info = new OnnxValueInfo();
            while (r.Next())
            {
                if (r.FieldNumber == 1 && r.WireType == WireType.LengthDelimited) info.Name = r.ReadString();
                else if (r.FieldNumber == 2 && r.WireType == WireType.LengthDelimited) ReadType(r.ReadMessage(), info);
                else r.Skip();
            }
            return info;
        }

        static void ReadType(ProtoReader r, OnnxValueInfo info)
        {
            while (r.Next())
            {
                if (r.FieldNumber != 1 || r.WireType != WireType.LengthDelimited) { r.Skip(); continue; }
                var tensorType = r.ReadMessage();
                while (tensorType.Next())
                {
                    if (tensorType.FieldNumber == 1 && tensorType.WireType == WireType.Varint)
                        info.ElementType = tensorType.ReadInt32();
                    else if (tensorType.FieldNumber == 2 && tensorType.WireType == WireType.LengthDelimited)
                        ReadShape(tensorType.ReadMessage(), info);
                    else tensorType.Skip();
                }
            }
        }

        static void ReadShape(ProtoReader r, OnnxValueInfo info)
        {
            while (r.Next())
            {
                if (r.FieldNumber != 1 || r.WireType != WireType.LengthDelimited) { r.Skip(); continue; }
                var dim = r.ReadMessage();
                long value = -1;
                while (dim.Next())
                {
                    if (dim.FieldNumber == 1 && dim.WireType == WireType.Varint) value = dim.ReadInt64();
                    else dim.Skip();
                }
                info.Dims.Add(value);
            }
            // Symbolic dims (-1, such as batch) count as 1: a declared shape never needs more than MaxElements per item.
            CheckedDims(info.Dims.ConvertAll(d => d == -1 ? 1 : d), "value '" + info.Name + "'");
        }

        /// <summary>Reads a TensorProto; float types become float32, integer and bool types int64.</summary>
        public static Tensor ReadTensor(ProtoReader r, out string name)
        {
            name = "";
            var dims = new List<long>();
            int type = 0;
            byte[] raw = null;
            var floats = new List<float>();
            var longs = new List<long>();
            var doubles = new List<double>();
            while (r.Next())
            {
                switch (r.FieldNumber)
                {
                    case 1: r.ReadInt64s(dims); break;
                    case 2: type = r.ReadInt32(); break;
                    case 4: r.ReadFloats(floats); break;
                    case 5: case 7: r.ReadInt64s(longs); break;
                    case 8: name = r.ReadString(); break;
                    case 9: raw = r.ReadBytes(); break;
                    case 10: r.ReadDoubles(doubles); break;
                    default: r.Skip(); break;
                }
            }
            var shape = CheckedDims(dims, "tensor '" + name + "'");
            int count = Tensor.Count(shape);
            if (raw != null) return FromRaw(raw, type, shape, count, name);
            int held = type == Float ? floats.Count : type == Double ? doubles.Count
                : type == Int64 || type == Int32 || type == Int8 || type == Uint8 || type == Bool ? longs.Count : -1;
            if (held < 0) throw new OnnxModelException("tensor '" + name + "' has unsupported element type " + type);
            if (held != count)
                throw new OnnxModelException("tensor '" + name + "' of dims " + Tensor.ShapeString(shape) + " holds " + held + " values, expected " + count);
            switch (type)
            {
                case Float: return new Tensor(shape, floats.ToArray());
                case Double: return new Tensor(shape, doubles.ConvertAll(d => (float)d).ToArray());
                default: return new Tensor(shape, longs.ToArray());
            }
        }

        /// <summary>Dims of <paramref name="what"/> as ints; throws OnnxModelException, naming the dim, for a
        /// negative one or for more than Tensor.MaxElements elements in all, before anything is allocated.</summary>
        static int[] CheckedDims(List<long> dims, string what)
        {
            var shape = new int[dims.Count];
            long count = 1;
            for (int i = 0; i < shape.Length; i++)
            {
                if (dims[i] < 0 || dims[i] > Tensor.MaxElements)
                    throw new OnnxModelException(what + " has dim " + i + " = " + dims[i] + "; dims must be between 0 and " + Tensor.MaxElements);
                shape[i] = (int)dims[i];
                count = Math.Min(count * shape[i], (long)Tensor.MaxElements + 1);
            }
            if (count > Tensor.MaxElements)
                throw new OnnxModelException(what + " has dims [" + string.Join(", ", dims.ConvertAll(d => d.ToString()).ToArray()) +
                    "], more than " + Tensor.MaxElements + " elements");
            return shape;
        }

        static Tensor FromRaw(byte[] raw, int type, int[] shape, int count, string name)
        {
            int size = type == Float || type == Int32 ? 4 : type == Int64 || type == Double ? 8
                : type == Float16 ? 2 : type == Int8 || type == Uint8 || type == Bool ? 1 : 0;
            if (size == 0) throw new OnnxModelException("tensor '" + name + "' has unsupported element type " + type);
            if (raw.Length != size * count)
                throw new OnnxModelException("tensor '" + name + "' has " + raw.Length + " raw bytes, expected " + size * count);
            if (type == Float || type == Double || type == Float16)
            {
                var f = new float[count];
                for (int i = 0; i < count; i++)
                    f[i] = type == Float ? BitConverter.ToSingle(raw, 4 * i)
                        : type == Double ? (float)BitConverter.ToDouble(raw, 8 * i) : HalfToFloat(BitConverter.ToUInt16(raw, 2 * i));
                return new Tensor(shape, f);
            }
            var l = new long[count];
            for (int i = 0; i < count; i++)
                l[i] = type == Int64 ? BitConverter.ToInt64(raw, 8 * i) : type == Int32 ? BitConverter.ToInt32(raw, 4 * i)
                    : type == Int8 ? (long)(sbyte)raw[i] : (long)raw[i];
            return new Tensor(shape, l);
        }

        static float HalfToFloat(ushort h)
        {
            int sign = (h >> 15) & 1, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
            double value = exponent == 0 ? mantissa * Math.Pow(2, -24)
                : exponent == 31 ? (mantissa == 0 ? double.PositiveInfinity : double.NaN)
                : (1 + mantissa / 1024.0) * Math.Pow(2, exponent - 15);
            return (float)(sign == 1 ? -value : value);
        }
    }
}
