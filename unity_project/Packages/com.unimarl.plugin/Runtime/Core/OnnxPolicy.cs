// One agent's decision from an ML-Agents-contract ONNX model (engine-free).
//
// Feeds obs_0..obs_{n-1} (and action_masks, 1 = allowed, when the model has discrete actions) with batch 1 and
// reads continuous_actions / discrete_actions, or their deterministic_* counterparts. Shapes come from the model's
// declared inputs, so a wrong observation length is reported before the graph runs.
//
// A model may take one more input, mean_action, float32 [batch, D] with D = continuous size + sum of the discrete
// branch sizes (mean-field policies; MeanActionRecorder computes the values). Such a model is run once on zeros
// when it is loaded to read its action layout from continuous_action_output_shape / discrete_action_output_shape,
// which must agree with D. Any other input is refused.
using System;
using System.Collections.Generic;

namespace Unimarl.Core
{
    public sealed class OnnxPolicy
    {
        public const string MeanActionInput = "mean_action";

        readonly OnnxEvaluator m_Evaluator;
        readonly List<OnnxValueInfo> m_Observations = new List<OnnxValueInfo>();
        readonly OnnxValueInfo m_Mask;
        readonly OnnxValueInfo m_MeanAction;

        public OnnxPolicy(byte[] modelBytes, int seed)
        {
            m_Evaluator = new OnnxEvaluator(modelBytes, seed);
            foreach (var input in m_Evaluator.Model.Inputs)
            {
                if (m_Evaluator.Model.Initializers.ContainsKey(input.Name)) continue;
                if (input.Name == "action_masks") m_Mask = input;
                else if (input.Name == MeanActionInput) m_MeanAction = input;
                else if (IsObservation(input.Name)) m_Observations.Add(input);
                else throw new OnnxModelException("input '" + input.Name + "' is not part of ML-Agents' model contract (obs_i, action_masks) nor '" + MeanActionInput + "'");
                CheckFixedDims(input);
            }
            m_Observations.Sort((a, b) => int.Parse(a.Name.Substring(4)).CompareTo(int.Parse(b.Name.Substring(4))));
            BranchSizes = new int[0];
            if (m_MeanAction != null) ReadActionLayout();
        }

        /// <summary>Batch first, then fixed dims: the policy feeds one agent, so every other size must be known.</summary>
        static void CheckFixedDims(OnnxValueInfo input)
        {
            bool ok = input.Dims.Count >= 1;
            for (int i = 1; ok && i < input.Dims.Count; i++) ok = input.Dims[i] >= 0;
            if (!ok)
                throw new OnnxModelException("input '" + input.Name + "' is declared [" +
                    string.Join(", ", input.Dims.ConvertAll(d => d < 0 ? "?" : d.ToString()).ToArray()) +
                    "]; a policy input needs a batch dim followed by fixed dims");
        }

        static bool IsObservation(string name)
        {
            int index;
            return name.StartsWith("obs_") && int.TryParse(name.Substring(4), out index) && index >= 0;
        }

        public int ObservationCount { get { return m_Observations.Count; } }
        public bool HasActionMask { get { return m_Mask != null; } }
        /// <summary>Whether the model takes a mean_action input.</summary>
        public bool HasMeanAction { get { return m_MeanAction != null; } }
        /// <summary>D of mean_action (0 without that input).</summary>
        public int MeanActionSize { get; private set; }
        /// <summary>Continuous action size, read from the model when it takes mean_action (else 0).</summary>
        public int ContinuousSize { get; private set; }
        /// <summary>Discrete branch sizes, read from the model when it takes mean_action (else empty).</summary>
        public int[] BranchSizes { get; private set; }

        void ReadActionLayout()
        {
            var dims = m_MeanAction.Dims;
            if (dims.Count != 2 || dims[1] < 1)
                throw new OnnxModelException("input '" + MeanActionInput + "' must be declared [batch, D] with a fixed D");
            MeanActionSize = (int)dims[1];
            var observations = new List<float[]>();
            foreach (var obs in m_Observations)
            {
                int count = 1;
                for (int i = 1; i < obs.Dims.Count; i++) count *= (int)obs.Dims[i];  // at most Tensor.MaxElements (OnnxModel)
                observations.Add(new float[count]);
            }
            var outputs = m_Evaluator.Run(Inputs(observations, null, new float[MeanActionSize]));
            Tensor t;
            if (outputs.TryGetValue("continuous_action_output_shape", out t))
            {
                if (t.Length != 1)
                    throw new OnnxModelException("output 'continuous_action_output_shape' holds " + t.Length + " values; the contract has one");
                ContinuousSize = ActionSize("continuous_action_output_shape", t.AsFloats()[0], 0);
            }
            if (outputs.TryGetValue("discrete_action_output_shape", out t))
                BranchSizes = Array.ConvertAll(t.AsFloats(), v => ActionSize("discrete_action_output_shape", v, 1));
            long size = ContinuousSize;
            foreach (int b in BranchSizes) size += b;
            if (size != MeanActionSize)
                throw new OnnxModelException("input '" + MeanActionInput + "' has " + MeanActionSize + " values but the model's actions encode to " + size +
                    " (continuous " + ContinuousSize + ", branches [" + string.Join(", ", Array.ConvertAll(BranchSizes, b => b.ToString())) + "]); " +
                    "export D = continuous size + sum of branch sizes, with the contract's *_action_output_shape outputs");
        }

        /// <summary>One size of the action layout, at least <paramref name="least"/> and at most D (a larger one could
        /// not fit in mean_action); negative, NaN or oversized values are refused before they size any array.</summary>
        int ActionSize(string output, float value, int least)
        {
            if (!(value >= least && value <= MeanActionSize))
                throw new OnnxModelException("output '" + output + "' holds " + value + "; sizes there must be between " + least +
                    " and D = " + MeanActionSize + " of input '" + MeanActionInput + "'");
            return (int)value;
        }

        /// <summary>Decides for one agent. <paramref name="observations"/>[i] is obs_i flattened (visual: C, H, W);
        /// <paramref name="actionMask"/> may be null (all allowed). Missing outputs leave the arrays untouched.</summary>
        public void Decide(IList<float[]> observations, float[] actionMask, bool deterministic, float[] continuousOut, int[] discreteOut)
        {
            Decide(observations, actionMask, null, deterministic, continuousOut, discreteOut);
        }

        /// <summary>As above; <paramref name="meanAction"/> (length <see cref="MeanActionSize"/>) feeds mean_action
        /// when the model takes it (null: zeros) and is ignored otherwise.</summary>
        public void Decide(IList<float[]> observations, float[] actionMask, float[] meanAction, bool deterministic, float[] continuousOut, int[] discreteOut)
        {
            if (observations.Count != m_Observations.Count)
                throw new ArgumentException("the model takes " + m_Observations.Count + " observations, got " + observations.Count);
            var outputs = m_Evaluator.Run(Inputs(observations, actionMask, meanAction ?? new float[MeanActionSize]));
            string prefix = deterministic ? "deterministic_" : "";
            Tensor t;
            if (continuousOut != null && outputs.TryGetValue(prefix + "continuous_actions", out t))
                Array.Copy(t.AsFloats(), continuousOut, Math.Min(continuousOut.Length, t.Length));
            if (discreteOut != null && outputs.TryGetValue(prefix + "discrete_actions", out t))
                for (int i = 0; i < Math.Min(discreteOut.Length, t.Length); i++) discreteOut[i] = (int)t.AsLongs()[i];
        }

        Dictionary<string, Tensor> Inputs(IList<float[]> observations, float[] actionMask, float[] meanAction)
        {
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
            if (m_MeanAction != null) inputs[m_MeanAction.Name] = Batch1(m_MeanAction, meanAction);
            return inputs;
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
