// Mean actions for policies with a mean_action input (mean-field policies such as MF-Q), engine-free.
//
// An agent's mean action is the average of the encoded actions (continuous values, then one one-hot per
// discrete branch; discrete values are clipped into their branch) that the *other* agents of its behaviour took
// at the behaviour's previous decision; the zero vector when no other agent counts. This is
// unimarl.trainers.meanfield.MeanActionTracker with the "team" neighbourhood, and what the stand-in games feed
// (sim/policy_runner.py).
//
// Use, per academy step: RollOver() first (PolicyHotSwap does it on Academy.AgentPreStep), then for each
// deciding agent MeanAction(agent, ...) and, once it acted, Record(agent, ...). RollOver turns the actions
// recorded since the last roll-over into "the previous decision"; a step in which nobody recorded keeps the
// previous decision (decision periods > 1). Forget(agent) at the start of an agent's new episode: a restarted
// agent is a new agent to the trainer, so its earlier action no longer counts.
// One difference with the trainer: the trainer counts only agents that decide again now; here an agent that
// acted at the previous decision counts until the next decision replaces it unless it was forgotten (an agent
// switched off without ending its episode still counts once).
using System;
using System.Collections.Generic;

namespace Unimarl.Core
{
    public sealed class MeanActionRecorder
    {
        readonly int m_Continuous;
        readonly int[] m_Branches;
        Dictionary<int, float[]> m_Previous = new Dictionary<int, float[]>();
        Dictionary<int, float[]> m_Current = new Dictionary<int, float[]>();
        readonly double[] m_Sum;

        public MeanActionRecorder(int continuousSize, IList<int> branchSizes)
        {
            if (continuousSize < 0) throw new ArgumentException("continuous size " + continuousSize + " is negative");
            m_Continuous = continuousSize;
            m_Branches = new int[branchSizes.Count];
            Size = continuousSize;
            for (int b = 0; b < m_Branches.Length; b++)
            {
                if (branchSizes[b] < 1) throw new ArgumentException("discrete branch " + b + " has size " + branchSizes[b] + "; sizes must be >= 1");
                m_Branches[b] = branchSizes[b];
                Size += branchSizes[b];
            }
            m_Sum = new double[Size];
        }

        /// <summary>Length of an encoded action: continuous size plus the sum of the branch sizes.</summary>
        public int Size { get; private set; }

        /// <summary>Agents whose actions make up the previous decision.</summary>
        public int PreviousCount { get { return m_Previous.Count; } }

        /// <summary>Stores the action <paramref name="agentId"/> takes at this step (replacing one recorded earlier
        /// in the same step). <paramref name="continuous"/> and <paramref name="discrete"/> may be null when the
        /// behaviour has no such actions.</summary>
        public void Record(int agentId, IList<float> continuous, IList<int> discrete)
        {
            var encoded = new float[Size];
            for (int i = 0; i < m_Continuous; i++) encoded[i] = continuous != null && i < continuous.Count ? continuous[i] : 0f;
            int offset = m_Continuous;
            for (int b = 0; b < m_Branches.Length; b++)
            {
                int value = discrete != null && b < discrete.Count ? discrete[b] : 0;
                encoded[offset + Math.Max(0, Math.Min(m_Branches[b] - 1, value))] = 1f;
                offset += m_Branches[b];
            }
            m_Current[agentId] = encoded;
        }

        /// <summary>The agent started a new episode: its recorded actions no longer count.</summary>
        public void Forget(int agentId)
        {
            float[] row;
            if (m_Previous.TryGetValue(agentId, out row))
            {
                for (int i = 0; i < Size; i++) m_Sum[i] -= row[i];
                m_Previous.Remove(agentId);
            }
            m_Current.Remove(agentId);
        }

        /// <summary>Starts a new academy step: what was recorded since the last call becomes the previous decision
        /// (nothing recorded: the previous decision stays).</summary>
        public void RollOver()
        {
            if (m_Current.Count == 0) return;
            var swap = m_Previous;
            m_Previous = m_Current;
            m_Current = swap;
            m_Current.Clear();
            Array.Clear(m_Sum, 0, Size);
            foreach (var row in m_Previous.Values)
                for (int i = 0; i < Size; i++) m_Sum[i] += row[i];
        }

        /// <summary>Writes the mean action of <paramref name="agentId"/> into <paramref name="output"/> (length
        /// <see cref="Size"/>).</summary>
        public void MeanAction(int agentId, float[] output)
        {
            if (output == null || output.Length != Size)
                throw new ArgumentException("the mean action has " + Size + " values, the output array " + (output == null ? "is null" : "has " + output.Length));
            float[] own;
            bool counted = m_Previous.TryGetValue(agentId, out own);
            int count = m_Previous.Count - (counted ? 1 : 0);
            for (int i = 0; i < Size; i++)
                output[i] = count == 0 ? 0f : (float)((m_Sum[i] - (counted ? own[i] : 0.0)) / count);
        }
    }
}
