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

        /// <summary>Most elements one tensor may hold (256 MiB of float32); larger shapes are refused before
        /// anything is allocated, whether a model file declares them or an operator would produce them.</summary>
        public const int MaxElements = 1 << 26;

        /// <summary>Elements of <paramref name="shape"/>; throws ArgumentException for a negative dim or more than
        /// <see cref="MaxElements"/> elements.</summary>
        public static int Count(int[] shape)
        {
            long n = 1;
            foreach (int d in shape)
            {
                if (d < 0) throw new ArgumentException("shape " + ShapeString(shape) + " has a negative dim");
                n = Math.Min(n * d, (long)MaxElements + 1);
            }
            if (n > MaxElements)
                throw new ArgumentException("shape " + ShapeString(shape) + " holds more than " + MaxElements + " elements");
            return (int)n;
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

        public string ShapeString() { return ShapeString(Shape); }

        public static string ShapeString(int[] shape) { return "[" + string.Join(", ", Array.ConvertAll(shape, d => d.ToString())) + "]"; }

        void Check(int length)
        {
            if (Count(Shape) != length)
                throw new ArgumentException("tensor of shape " + ShapeString() + " cannot hold " + length + " elements");
        }
    }
}
