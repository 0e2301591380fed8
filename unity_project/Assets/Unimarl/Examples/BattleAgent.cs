// Battle agent, the Unity counterpart of sim/battle.py (behaviours "Battle" team 0 and 1, Team Id in
// Behavior Parameters).
//
// Observations, all in the agent's team's egocentric frame (team 1's columns mirrored, see BattleArena): three
// VectorSensorComponents on the agent (Behavior Parameters' vector observation size 0): "LocalView" (V x V x 5
// floats around the agent, row-major with channels last: walls (also outside the map), own team, other team, own
// team's hp, other team's hp), "Status" (own hp fraction, own team alive fraction, other team alive fraction,
// episode progress) and "position" ((column, row) / (size - 1), team 1's column counted from the right; distances
// are the same in both frames, as mean-field neighbourhoods need). ML-Agents sends (and a model takes) an agent's
// sensors sorted by name with StringComparison.InvariantCulture (Sensors/ISensor.cs:133-137, 3.0.0 and 4.0.1),
// not ordinally: obs_0 LocalView, obs_1 position, obs_2 Status; Heuristic passes them named and PolicyHotSwap
// feeds them in that order. The view travels as a flat vector; a policy exported from the sim (which sends it as
// a rank-3 observation) expects the same values in C, H, W order, which TryDecide's caller would have to transpose.
// Actions: one branch of 21 (BattleArena.Moves / Attacks, offsets in the team's frame: the same action number
// moves or attacks team 1 to the mirrored side); WriteDiscreteActionMask disables moves into walls, obstacles or
// occupied cells and attacks on cells without an enemy. Rewards, episodes and stats: BattleArena.
// Heuristic (Behavior Type Heuristic Only, e.g. a self-play opponent team): the policy pushed to m_HotSwap, with
// the agent's instance id, its team's group id (BattleArena.GroupId) and Team Id, so a mean-field policy
// (mean_action input) gets the mean action of its own arena's team.
using System.Collections.Generic;
using Unimarl.Core;
using Unimarl.Unity;
using Unity.MLAgents;
using Unity.MLAgents.Actuators;
using Unity.MLAgents.Sensors;
using UnityEngine;

namespace Unimarl.Examples
{
    public sealed class BattleAgent : Agent
    {
        [SerializeField] BattleArena m_Arena;
        [SerializeField] int m_Team = 0;
        [SerializeField] VectorSensorComponent m_LocalView;
        [SerializeField] VectorSensorComponent m_Status;
        [SerializeField] VectorSensorComponent m_Position;
        [SerializeField] PolicyHotSwap m_HotSwap;

        readonly float[] m_Mask = new float[BattleArena.NumActions];
        readonly List<SensorObservation> m_HeuristicInputs = new List<SensorObservation>(3);

        public int Team { get { return m_Team; } }

        /// <summary>Sets the agent's arena, team, sensors and hot-swap component (the scene builder).</summary>
        public void Configure(BattleArena arena, int team, VectorSensorComponent localView, VectorSensorComponent status,
            VectorSensorComponent position, PolicyHotSwap hotSwap)
        {
            m_Arena = arena;
            m_Team = team;
            m_LocalView = localView;
            m_Status = status;
            m_Position = position;
            m_HotSwap = hotSwap;
        }

        public Vector2Int Cell { get; set; }
        public float Hp { get; set; }
        public bool Alive { get; set; }
        public int ChosenAction { get; private set; }

        public override void CollectObservations(VectorSensor sensor)
        {
            m_LocalView.GetSensor().AddObservation(m_Arena.LocalView(this));
            m_Status.GetSensor().AddObservation(m_Arena.Status(this));
            m_Position.GetSensor().AddObservation(m_Arena.Position(this));
        }

        public override void WriteDiscreteActionMask(IDiscreteActionMask actionMask)
        {
            m_Arena.FillMask(this, m_Mask);
            for (int action = 1; action < BattleArena.NumActions; action++)
                if (m_Mask[action] == 0f) actionMask.SetActionEnabled(0, action, false);
        }

        public override void OnActionReceived(ActionBuffers actions)
        {
            ChosenAction = Mathf.Clamp(actions.DiscreteActions[0], 0, BattleArena.NumActions - 1);
        }

        public override void OnEpisodeBegin()
        {
            if (m_HotSwap != null) m_HotSwap.OnAgentEpisodeBegin(GetInstanceID());
        }

        public override void Heuristic(in ActionBuffers actionsOut)
        {
            if (m_HotSwap == null) return;  // no pushed policies to run: stay
            // named as the sensors: PolicyHotSwap feeds them in ML-Agents' order (LocalView, position, Status)
            m_HeuristicInputs.Clear();
            m_HeuristicInputs.Add(new SensorObservation(m_LocalView.SensorName, m_Arena.LocalView(this)));
            m_HeuristicInputs.Add(new SensorObservation(m_Status.SensorName, m_Arena.Status(this)));
            m_HeuristicInputs.Add(new SensorObservation(m_Position.SensorName, m_Arena.Position(this)));
            m_Arena.FillMask(this, m_Mask);
            m_HotSwap.TryDecide(GetInstanceID(), m_Arena.GroupId(m_Team), m_Team, m_HeuristicInputs, m_Mask, actionsOut);
        }
    }
}
