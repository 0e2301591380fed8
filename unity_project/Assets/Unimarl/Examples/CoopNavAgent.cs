// Cooperative navigation agent, the Unity counterpart of sim/coop_nav.py (behaviour "CoopNav", team 0).
//
// Observation (CollectObservations, 4 + 2N + 2(N-1) floats, N = agents of the area): own velocity, own
// position, every landmark's position relative to the agent, every other agent's position relative to the
// agent (area order). Actions: one discrete branch of 5 (0 no-op, 1 +x, 2 -x, 3 +y, 4 -y) or, with
// m_Continuous, 2 continuous actions (force, clipped to [-1, 1]); set Behavior Parameters to match. Dynamics:
// velocity damping 0.25, acceleration 5, dt 0.1, on the area's plane (x, z of the transform). Rewards and
// episode ends come from CoopNavArea (team reward through a SimpleMultiAgentGroup).
//
// Heuristic: runs the policy pushed by the trainer through PolicyHotSwap (player builds, Behavior Type
// Heuristic Only); before the first policy arrives the agent stays still.
using System.Collections.Generic;
using Unimarl.Core;
using Unimarl.Unity;
using Unity.MLAgents;
using Unity.MLAgents.Actuators;
using Unity.MLAgents.Sensors;
using UnityEngine;

namespace Unimarl.Examples
{
    public sealed class CoopNavAgent : Agent
    {
        const float Damping = 0.25f, Acceleration = 5f, Dt = 0.1f;
        static readonly Vector2[] Moves = { Vector2.zero, Vector2.right, Vector2.left, Vector2.up, Vector2.down };

        [SerializeField] CoopNavArea m_Area;
        [SerializeField] PolicyHotSwap m_HotSwap;
        [Tooltip("2 continuous actions instead of 5 discrete ones (as sim/coop_nav.py --continuous).")]
        [SerializeField] bool m_Continuous = false;

        readonly List<float> m_Vector = new List<float>();
        readonly List<SensorObservation> m_HeuristicInputs = new List<SensorObservation> { default(SensorObservation) };

        /// <summary>Sets the agent's area and hot-swap component (the scene builder).</summary>
        public void Configure(CoopNavArea area, PolicyHotSwap hotSwap, bool continuous)
        {
            m_Area = area;
            m_HotSwap = hotSwap;
            m_Continuous = continuous;
        }

        public Vector2 Position { get; private set; }
        public Vector2 Velocity { get; private set; }

        /// <summary>Called by the area when an episode starts.</summary>
        public void Place(Vector2 position)
        {
            Position = position;
            Velocity = Vector2.zero;
            transform.localPosition = new Vector3(position.x, 0f, position.y);
        }

        /// <summary>The observation, in the order of sim/coop_nav.py.</summary>
        public List<float> ObservationVector()
        {
            m_Vector.Clear();
            m_Vector.Add(Velocity.x); m_Vector.Add(Velocity.y);
            m_Vector.Add(Position.x); m_Vector.Add(Position.y);
            foreach (var landmark in m_Area.Landmarks)
            {
                m_Vector.Add(landmark.x - Position.x); m_Vector.Add(landmark.y - Position.y);
            }
            foreach (var other in m_Area.Agents)
            {
                if (other == this) continue;
                m_Vector.Add(other.Position.x - Position.x); m_Vector.Add(other.Position.y - Position.y);
            }
            return m_Vector;
        }

        public override void CollectObservations(VectorSensor sensor)
        {
            sensor.AddObservation(ObservationVector());
        }

        public override void OnActionReceived(ActionBuffers actions)
        {
            Vector2 force;
            if (m_Continuous)
            {
                var c = actions.ContinuousActions;
                force = new Vector2(Mathf.Clamp(c[0], -1f, 1f), Mathf.Clamp(c[1], -1f, 1f));
            }
            else
            {
                force = Moves[Mathf.Clamp(actions.DiscreteActions[0], 0, Moves.Length - 1)];
            }
            Velocity = Velocity * (1f - Damping) + force * (Acceleration * Dt);
            Position += Velocity * Dt;
            transform.localPosition = new Vector3(Position.x, 0f, Position.y);
        }

        public override void Heuristic(in ActionBuffers actionsOut)
        {
            if (m_HotSwap == null) return;  // no pushed policies to run: stay still
            // the CollectObservations sensor's name (VectorSensor.cs:28: "VectorSensor_size" + size)
            var values = ObservationVector().ToArray();
            m_HeuristicInputs[0] = new SensorObservation("VectorSensor_size" + values.Length, values);
            m_HotSwap.TryDecide(m_HeuristicInputs, null, actionsOut);
        }
    }
}
