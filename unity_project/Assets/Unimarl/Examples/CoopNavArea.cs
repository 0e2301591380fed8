// One area of the cooperative navigation example (sim/coop_nav.py): N agents and N landmarks in [-1, 1]^2.
//
// Before every Academy step (Academy.AgentPreStep), i.e. after the agents acted on the previous decision,
// the area gives the team reward -sum over landmarks of the nearest agent's distance - colliding agent pairs
// (radius 0.15) to the group only (AddGroupReward, as ML-Agents' cooperative examples PushBlockCollab and
// DungeonEscape do; the agents' own rewards stay 0), as the sim does with group_reward; after m_EpisodeLength steps (25) it interrupts the group episode (max step
// reached), restarts the area and requests the agents' decisions again: their DecisionRequester (Decision Period
// 1) already asked for this step's decision in AgentPreStep (DecisionRequester.cs:65-71, 97-113, subscribed in
// Awake, before this handler) and ending the episode dropped that request (Agent.cs:641-642, NotifyAgentDone);
// AgentSendState, which sends the new episode's first observation, comes after AgentPreStep (Academy.cs:577-585
// in 3.0.0, 578-586 in 4.0.1). Without this every episode after the first would have 24 decisions, not 25.
using System.Collections.Generic;
using Unity.MLAgents;
using UnityEngine;

namespace Unimarl.Examples
{
    public sealed class CoopNavArea : MonoBehaviour
    {
        const float Radius = 0.15f;

        [SerializeField] CoopNavAgent[] m_Agents = new CoopNavAgent[0];
        [SerializeField] Transform[] m_LandmarkMarkers = new Transform[0];
        [SerializeField] int m_EpisodeLength = 25;
        [SerializeField] int m_Seed = 0;

        SimpleMultiAgentGroup m_Group;
        System.Random m_Random;
        Vector2[] m_Landmarks = new Vector2[0];
        int m_Step;

        public IReadOnlyList<CoopNavAgent> Agents { get { return m_Agents; } }
        public IReadOnlyList<Vector2> Landmarks { get { return m_Landmarks; } }

        /// <summary>Sets the area's agents and landmark markers (the scene builder; before the area starts).</summary>
        public void Configure(CoopNavAgent[] agents, Transform[] landmarkMarkers)
        {
            m_Agents = agents;
            m_LandmarkMarkers = landmarkMarkers;
        }

        void Start()
        {
            m_Random = new System.Random(m_Seed);
            m_Landmarks = new Vector2[m_Agents.Length];
            m_Group = new SimpleMultiAgentGroup();
            foreach (var agent in m_Agents) m_Group.RegisterAgent(agent);
            Academy.Instance.AgentPreStep += OnPreStep;
            ResetArea();
        }

        void OnDestroy()
        {
            if (Academy.IsInitialized) Academy.Instance.AgentPreStep -= OnPreStep;
            if (m_Group != null) m_Group.Dispose();
        }

        float Uniform(float low, float high) { return low + (float)m_Random.NextDouble() * (high - low); }

        void ResetArea()
        {
            m_Step = 0;
            foreach (var agent in m_Agents) agent.Place(new Vector2(Uniform(-1f, 1f), Uniform(-1f, 1f)));
            for (int i = 0; i < m_Landmarks.Length; i++)
            {
                m_Landmarks[i] = new Vector2(Uniform(-0.9f, 0.9f), Uniform(-0.9f, 0.9f));
                if (i < m_LandmarkMarkers.Length)
                    m_LandmarkMarkers[i].localPosition = new Vector3(m_Landmarks[i].x, 0f, m_Landmarks[i].y);
            }
        }

        float TeamReward()
        {
            float reward = 0f;
            foreach (var landmark in m_Landmarks)
            {
                float nearest = float.MaxValue;
                foreach (var agent in m_Agents) nearest = Mathf.Min(nearest, Vector2.Distance(agent.Position, landmark));
                reward -= nearest;
            }
            for (int i = 0; i < m_Agents.Length; i++)
                for (int j = i + 1; j < m_Agents.Length; j++)
                    if (Vector2.Distance(m_Agents[i].Position, m_Agents[j].Position) < 2f * Radius) reward -= 1f;
            return reward;
        }

        void OnPreStep(int academyStepCount)
        {
            if (academyStepCount == 0) return;  // nothing has acted yet
            float team = TeamReward();
            m_Group.AddGroupReward(team);
            if (++m_Step < m_EpisodeLength) return;
            m_Group.GroupEpisodeInterrupted();
            ResetArea();
            foreach (var agent in m_Agents) agent.RequestDecision();
        }
    }
}
