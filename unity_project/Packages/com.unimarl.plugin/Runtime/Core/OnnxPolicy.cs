// One agent's decision from an ML-Agents-contract ONNX model (engine-free).
//
// Feeds obs_0..obs_{n-1} (and action_masks, 1 = allowed, when the model has discrete actions) with batch 1 and
// reads continuous_actions / discrete_actions, or their deterministic_* counterparts. Shapes come from the model's
// declared inputs, so a wrong observation length is reported before the graph runs.
using System;
using System.Collections.Generic;

namespace Unimarl.Core
{
    public sealed class OnnxPolicy
    {
        readonly OnnxEvaluator m_Evaluator;
        readonly List<OnnxValueInfo> m_Observations = new List<OnnxValueInfo>();
        readonly OnnxValueInfo m_Mask;

        public OnnxPolicy(byte[] modelBytes, int seed)
        {
            m_Evaluator = new OnnxEvaluator(modelBytes, seed);
            foreach (var input in m_Evaluator.Model.Inputs)
            {
                if (m_Evaluator.Model.Initializers.ContainsKey(input.Name)) continue;
                if (input.Name == "action_masks") m_Mask = input;
                else if (input.Name.StartsWith("obs_")) m_Observations.Add(input);
                else throw new OnnxModelException("input '" + input.Name + "' is not part of ML-Agents' model contract");
            }
            m_Observations.Sort((a, b) => int.Parse(a.Name.Substring(4)).CompareTo(int.Parse(b.Name.Substring(4))));
        }

        public int ObservationCount { get { return m_Observations.Count; } }
        public bool HasActionMask { get { return m_Mask != null; } }

        /// <summary>Decides for one agent. <paramref name="observations"/>[i] is obs_i flattened (visual: C, H, W);
        /// <paramref name="actionMask"/> may be null (all allowed). Missing outputs leave the arrays untouched.</summary>
        public void Decide(IList<float[]> observations, float[] actionMask, bool deterministic, float[] continuousOut, int[] discreteOut)
        {
            if (observations.Count != m_Observations.Count)
                throw new ArgumentException("the model takes " + m_Observations.Count + " observations, got " + observations.Count);
            var inputs = new Dictionary<string, Tensor>();
            for (int i = 0; i < observations.Count; i++) inputs[m_Observations[i].Name] = Batch1(m_Observations[i], observations[i]);
            if (m_Mask != null)
            {
                var mask = actionMask;
                if (mask == null)
                {
                    mask = new float[m_Mask.Dims.Count > 1 ? (int)m_Mask.Dims[1] : 0];
                    for (int i = 0; i < mask.Length; i++) mask[i] = 1f;
                }
                inputs[m_Mask.Name] = Batch1(m_Mask, mask);
            }
            var outputs = m_Evaluator.Run(inputs);
            string prefix = deterministic ? "deterministic_" : "";
            Tensor t;
            if (continuousOut != null && outputs.TryGetValue(prefix + "continuous_actions", out t))
                Array.Copy(t.AsFloats(), continuousOut, Math.Min(continuousOut.Length, t.Length));
            if (discreteOut != null && outputs.TryGetValue(prefix + "discrete_actions", out t))
                for (int i = 0; i < Math.Min(discreteOut.Length, t.Length); i++) discreteOut[i] = (int)t.AsLongs()[i];
        }

        static Tensor Batch1(OnnxValueInfo info, float[] values)
        {
            var shape = new int[info.Dims.Count];
            shape[0] = 1;
            for (int i = 1; i < shape.Length; i++) shape[i] = (int)info.Dims[i];
            if (Tensor.Count(shape) != values.Length)
                throw new ArgumentException("'" + info.Name + "' needs " + Tensor.Count(shape) + " values, got " + values.Length);
            return new Tensor(shape, values);
        }
    }
}
