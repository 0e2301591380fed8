// Mean actions for policies with a mean_action input (mean-field policies such as MF-Q), engine-free.
//
// An agent's mean action is the average of the encoded actions (continuous values, then one one-hot per
// discrete branch; discrete values are clipped into their branch) that the *other* agents of its segment took at
// the behaviour's previous decision; the zero vector when no other agent counts. A segment is a Team Id and a
// Unity group (Segment(groupId, teamId); group 0: the agent has no SimpleMultiAgentGroup), so agents of one
// behaviour in different areas (each area's team its own group) never mix. This is
// unimarl.trainers.meanfield.MeanActionTracker with the "team" neighbourhood and the Unity group as segment, as
// the trainer's mean-field worker (one tracker per behaviour "Name?team=N") and the stand-in games
// (sim/policy_runner.py) compute it.
//
// Use, per academy step: RollOver() first (PolicyHotSwap does it on Academy.AgentPreStep), then for each
// deciding agent MeanAction(agent, segment, ...) and, once it acted, Record(agent, segment, ...). RollOver turns
// the actions recorded since the last roll-over into "the previous decision"; a step in which nobody recorded
// keeps the previous decision (decision periods > 1). Forget(agent) at the start of an agent's new episode: a
// restarted agent is a new agent to the trainer, so its earlier action no longer counts.
// Differences with the trainer: the trainer counts only agents that decide again now, in the group they report
// now; here an agent that acted at the previous decision counts, in the segment it recorded, until the next
// decision replaces it unless it was forgotten (an agent switched off without ending its episode still counts
// once).
using System;
using System.Collections.Generic;

namespace Unimarl.Core
{
    public sealed class MeanActionRecorder
    {
        struct Entry
        {
            public long Segment;
            public float[] Row;
        }

        readonly int m_Continuous;
        readonly int[] m_Branches;
        Dictionary<int, Entry> m_Previous = new Dictionary<int, Entry>();
        Dictionary<int, Entry> m_Current = new Dictionary<int, Entry>();
        readonly Dictionary<long, double[]> m_Sums = new Dictionary<long, double[]>();
        readonly Dictionary<long, int> m_Counts = new Dictionary<long, int>();

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
        }

        /// <summary>The segment of an agent: its Team Id and the id of its SimpleMultiAgentGroup (GetId(); 0 when it
        /// has none, as ML-Agents reports an agent without a group).</summary>
        public static long Segment(int groupId, int teamId)
        {
            return ((long)teamId << 32) | (uint)groupId;
        }

        /// <summary>Length of an encoded action: continuous size plus the sum of the branch sizes.</summary>
        public int Size { get; private set; }

        /// <summary>Agents whose actions make up the previous decision.</summary>
        public int PreviousCount { get { return m_Previous.Count; } }

        /// <summary>Stores the action <paramref name="agentId"/> of <paramref name="segment"/> takes at this step
        /// (replacing one recorded earlier in the same step). <paramref name="continuous"/> and
        /// <paramref name="discrete"/> may be null when the behaviour has no such actions.</summary>
        public void Record(int agentId, long segment, IList<float> continuous, IList<int> discrete)
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
            m_Current[agentId] = new Entry { Segment = segment, Row = encoded };
        }

        /// <summary>The agent started a new episode: its recorded actions no longer count.</summary>
        public void Forget(int agentId)
        {
            Entry entry;
            if (m_Previous.TryGetValue(agentId, out entry))
            {
                var sum = m_Sums[entry.Segment];
                for (int i = 0; i < Size; i++) sum[i] -= entry.Row[i];
                m_Counts[entry.Segment]--;
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
            m_Sums.Clear();
            m_Counts.Clear();
            foreach (var entry in m_Previous.Values)
            {
                double[] sum;
                if (!m_Sums.TryGetValue(entry.Segment, out sum)) m_Sums[entry.Segment] = sum = new double[Size];
                for (int i = 0; i < Size; i++) sum[i] += entry.Row[i];
                int count;
                m_Counts.TryGetValue(entry.Segment, out count);
                m_Counts[entry.Segment] = count + 1;
            }
        }

        /// <summary>Writes the mean action of <paramref name="agentId"/> of <paramref name="segment"/> into
        /// <paramref name="output"/> (length <see cref="Size"/>).</summary>
        public void MeanAction(int agentId, long segment, float[] output)
        {
            if (output == null || output.Length != Size)
                throw new ArgumentException("the mean action has " + Size + " values, the output array " + (output == null ? "is null" : "has " + output.Length));
            double[] sum;
            int count;
            if (!m_Sums.TryGetValue(segment, out sum) || !m_Counts.TryGetValue(segment, out count)) count = 0;
            Entry own;
            float[] ownRow = count > 0 && m_Previous.TryGetValue(agentId, out own) && own.Segment == segment ? own.Row : null;
            if (ownRow != null) count--;  // the agent itself never counts
            for (int i = 0; i < Size; i++)
                output[i] = count <= 0 ? 0f : (float)((sum[i] - (ownRow != null ? ownRow[i] : 0.0)) / count);
        }
    }
}
