// One battle map (sim/battle.py): two teams on a size x size grid with walls on the border and random
// obstacles. Before every Academy step the arena resolves the actions the agents chose: attacks first (on
// positions before moving; hp 10, damage 2), then deaths, then moves in a random order (the first mover wins
// a contested cell). Rewards: +0.2 per hit, +5 per kill to every attacker of the victim that step, -1 on
// death, -0.005 per step alive. A dead agent ends its episode once (EndEpisode) and is switched off until the
// next episode; the episode ends when a team is wiped out (EndEpisode) or after m_MaxSteps steps
// (EpisodeInterrupted), then everybody restarts.
using System.Collections.Generic;
using Unity.MLAgents;
using UnityEngine;

namespace Unimarl.Examples
{
    public sealed class BattleArena : MonoBehaviour
    {
        public const int NumActions = 21, FirstAttack = 13, Channels = 5;
        const float MaxHp = 10f, Damage = 2f, HitReward = 0.2f, KillReward = 5f, DeathPenalty = -1f, StepCost = -0.005f;
        /// <summary>Actions 1-12: (row, column) offsets of the move targets; 13-20: of the attacked cells.</summary>
        public static readonly Vector2Int[] Moves =
        {
            new Vector2Int(-1, 0), new Vector2Int(1, 0), new Vector2Int(0, -1), new Vector2Int(0, 1),
            new Vector2Int(-1, -1), new Vector2Int(-1, 1), new Vector2Int(1, -1), new Vector2Int(1, 1),
            new Vector2Int(-2, 0), new Vector2Int(2, 0), new Vector2Int(0, -2), new Vector2Int(0, 2),
        };
        public static readonly Vector2Int[] Attacks =
        {
            new Vector2Int(-1, -1), new Vector2Int(-1, 0), new Vector2Int(-1, 1), new Vector2Int(0, -1),
            new Vector2Int(0, 1), new Vector2Int(1, -1), new Vector2Int(1, 0), new Vector2Int(1, 1),
        };

        [SerializeField] BattleAgent[] m_Agents = new BattleAgent[0];
        [SerializeField] int m_Size = 40;
        [SerializeField] int m_View = 13;
        [SerializeField] float m_Obstacles = 0.03f;
        [SerializeField] int m_MaxSteps = 400;
        [SerializeField] int m_Seed = 0;

        System.Random m_Random;
        bool[,] m_Wall;
        BattleAgent[,] m_Occupant;
        int m_Step;

        void Start()
        {
            m_Random = new System.Random(m_Seed);
            m_Wall = new bool[m_Size, m_Size];
            for (int r = 0; r < m_Size; r++)
                for (int c = 0; c < m_Size; c++)
                    m_Wall[r, c] = r == 0 || c == 0 || r == m_Size - 1 || c == m_Size - 1 || m_Random.NextDouble() < m_Obstacles;
            m_Occupant = new BattleAgent[m_Size, m_Size];
            Academy.Instance.AgentPreStep += OnPreStep;
            ResetArena();
        }

        void OnDestroy()
        {
            if (Academy.IsInitialized) Academy.Instance.AgentPreStep -= OnPreStep;
        }

        bool Blocked(Vector2Int cell)
        {
            return cell.x < 0 || cell.y < 0 || cell.x >= m_Size || cell.y >= m_Size || m_Wall[cell.x, cell.y];
        }

        BattleAgent At(Vector2Int cell) { return Blocked(cell) ? null : m_Occupant[cell.x, cell.y]; }

        void ResetArena()
        {
            m_Step = 0;
            System.Array.Clear(m_Occupant, 0, m_Occupant.Length);
            int half = m_Size / 2;
            foreach (var agent in m_Agents)
            {
                int first = agent.Team == 0 ? 1 : half, end = agent.Team == 0 ? half : m_Size - 1;
                Vector2Int cell;
                do cell = new Vector2Int(m_Random.Next(1, m_Size - 1), m_Random.Next(first, end));
                while (m_Wall[cell.x, cell.y] || m_Occupant[cell.x, cell.y] != null);
                agent.Cell = cell;
                agent.Hp = MaxHp;
                agent.Alive = true;
                agent.gameObject.SetActive(true);
                m_Occupant[cell.x, cell.y] = agent;
            }
        }

        /// <summary>1 = allowed, 0 = masked, for the 21 actions of <paramref name="agent"/>.</summary>
        public void FillMask(BattleAgent agent, float[] mask)
        {
            mask[0] = 1f;
            for (int i = 0; i < Moves.Length; i++)
            {
                var to = agent.Cell + Moves[i];
                mask[1 + i] = Blocked(to) || m_Occupant[to.x, to.y] != null ? 0f : 1f;
            }
            for (int i = 0; i < Attacks.Length; i++)
            {
                var other = At(agent.Cell + Attacks[i]);
                mask[FirstAttack + i] = other != null && other.Team != agent.Team ? 1f : 0f;
            }
        }

        /// <summary>The V x V x 5 view around <paramref name="agent"/>, row-major, channels last (as the sim).</summary>
        public float[] LocalView(BattleAgent agent)
        {
            int r = m_View / 2;
            var view = new float[m_View * m_View * Channels];
            for (int i = 0; i < m_View; i++)
                for (int j = 0; j < m_View; j++)
                {
                    var cell = agent.Cell + new Vector2Int(i - r, j - r);
                    int at = (i * m_View + j) * Channels;
                    view[at] = Blocked(cell) ? 1f : 0f;
                    var other = At(cell);
                    if (other == null) continue;
                    int side = other.Team == agent.Team ? 0 : 1;
                    view[at + 1 + side] = 1f;
                    view[at + 3 + side] = other.Hp / MaxHp;
                }
            return view;
        }

        public float[] Status(BattleAgent agent)
        {
            int own = 0, ownAlive = 0, other = 0, otherAlive = 0;
            foreach (var a in m_Agents)
            {
                if (a.Team == agent.Team) { own++; if (a.Alive) ownAlive++; }
                else { other++; if (a.Alive) otherAlive++; }
            }
            return new[] { agent.Hp / MaxHp, ownAlive / (float)own, otherAlive / (float)Mathf.Max(other, 1), m_Step / (float)m_MaxSteps };
        }

        public float[] Position(BattleAgent agent)
        {
            return new[] { agent.Cell.y / (float)(m_Size - 1), agent.Cell.x / (float)(m_Size - 1) };
        }

        void OnPreStep(int academyStepCount)
        {
            if (academyStepCount == 0) return;  // nothing has acted yet
            var hitters = new Dictionary<BattleAgent, List<BattleAgent>>();
            foreach (var agent in m_Agents)
            {
                if (!agent.Alive || agent.ChosenAction < FirstAttack) continue;
                var victim = At(agent.Cell + Attacks[agent.ChosenAction - FirstAttack]);
                if (victim == null || victim.Team == agent.Team) continue;
                victim.Hp -= Damage;
                agent.AddReward(HitReward);
                if (!hitters.ContainsKey(victim)) hitters[victim] = new List<BattleAgent>();
                hitters[victim].Add(agent);
            }
            foreach (var agent in m_Agents)
            {
                if (!agent.Alive || agent.Hp > 0f) continue;
                foreach (var hitter in hitters[agent]) hitter.AddReward(KillReward);
                agent.AddReward(DeathPenalty);
                agent.Alive = false;
                m_Occupant[agent.Cell.x, agent.Cell.y] = null;
                agent.EndEpisode();
                agent.gameObject.SetActive(false);
            }
            Move();
            foreach (var agent in m_Agents) if (agent.Alive) agent.AddReward(StepCost);
            m_Step++;
            bool[] wiped = { true, true };
            foreach (var agent in m_Agents) if (agent.Alive) wiped[agent.Team] = false;
            if (!wiped[0] && !wiped[1] && m_Step < m_MaxSteps) return;
            foreach (var agent in m_Agents)
            {
                if (!agent.Alive) continue;
                if (wiped[0] || wiped[1]) agent.EndEpisode();
                else agent.EpisodeInterrupted();
            }
            ResetArena();
        }

        void Move()
        {
            var movers = new List<BattleAgent>();
            foreach (var agent in m_Agents)
                if (agent.Alive && agent.ChosenAction >= 1 && agent.ChosenAction < FirstAttack) movers.Add(agent);
            for (int i = movers.Count - 1; i > 0; i--)  // random order: the first mover wins a contested cell
            {
                int j = m_Random.Next(i + 1);
                var swap = movers[i]; movers[i] = movers[j]; movers[j] = swap;
            }
            var occupied = new HashSet<Vector2Int>();  // cells held before anyone moves (the sim's rule)
            foreach (var agent in m_Agents) if (agent.Alive) occupied.Add(agent.Cell);
            var claimed = new HashSet<Vector2Int>();
            foreach (var agent in movers)
            {
                var to = agent.Cell + Moves[agent.ChosenAction - 1];
                if (Blocked(to) || occupied.Contains(to) || !claimed.Add(to)) continue;
                m_Occupant[agent.Cell.x, agent.Cell.y] = null;
                m_Occupant[to.x, to.y] = agent;
                agent.Cell = to;
            }
        }
    }
}
