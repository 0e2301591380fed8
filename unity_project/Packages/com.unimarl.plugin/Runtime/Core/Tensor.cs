// Dense row-major tensors for the engine-free evaluator: float32 data, or int64 data for indices and shapes.
using System;

namespace Unimarl.Core
{
    /// <summary>A dense tensor: <see cref="Floats"/> for float32 tensors, <see cref="Ints"/> for int64 ones.</summary>
    public sealed class Tensor
    {
        public readonly int[] Shape;
        public readonly float[] Floats;
        public readonly long[] Ints;

        public Tensor(int[] shape, float[] data)
        {
            Shape = shape;
            Floats = data;
            Check(data.Length);
        }

        public Tensor(int[] shape, long[] data)
        {
            Shape = shape;
            Ints = data;
            Check(data.Length);
        }

        public bool IsInt { get { return Ints != null; } }
        public int Rank { get { return Shape.Length; } }
        public int Length { get { return IsInt ? Ints.Length : Floats.Length; } }

        public static int Count(int[] shape)
        {
            int n = 1;
            foreach (int d in shape) n *= d;
            return n;
        }

        /// <summary>Element i as a double, whatever the element type.</summary>
        public double Get(int i) { return IsInt ? Ints[i] : Floats[i]; }

        /// <summary>Elements as longs (float tensors are truncated), e.g. for shape and axis inputs.</summary>
        public long[] AsLongs()
        {
            if (IsInt) return Ints;
            var result = new long[Floats.Length];
            for (int i = 0; i < result.Length; i++) result[i] = (long)Floats[i];
            return result;
        }

        /// <summary>Elements as floats (int tensors are converted).</summary>
        public float[] AsFloats()
        {
            if (!IsInt) return Floats;
            var result = new float[Ints.Length];
            for (int i = 0; i < result.Length; i++) result[i] = Ints[i];
            return result;
        }

        public static int[] Strides(int[] shape)
        {
            var strides = new int[shape.Length];
            int s = 1;
            for (int i = shape.Length - 1; i >= 0; i--)
            {
                strides[i] = s;
                s *= shape[i];
            }
            return strides;
        }

        public string ShapeString() { return "[" + string.Join(", ", Array.ConvertAll(Shape, d => d.ToString())) + "]"; }

        void Check(int length)
        {
            if (Count(Shape) != length)
                throw new ArgumentException("tensor of shape " + ShapeString() + " cannot hold " + length + " elements");
        }
    }
}
