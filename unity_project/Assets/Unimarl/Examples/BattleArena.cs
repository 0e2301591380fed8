// One battle map (sim/battle.py): two teams on a size x size grid with walls on the border and random
// obstacles, mirror-symmetric (obstacles are drawn for the left half and mirrored). Team 0 starts in columns
// [1, size / 2), team 1 in the mirrored columns [size - size / 2, size - 1). Each team sees and acts in its own
// egocentric frame: team 1's columns are mirrored (column c is seen as size - 1 - c; rows never are), so a
// team-1 agent gets exactly the view, status, position and mask a team-0 agent gets in the mirrored cell, and
// the same action number does the mirrored thing (Frame negates its column offsets). Before every Academy
// step the arena resolves the actions the agents chose: attacks first (on positions before moving; hp 10,
// damage 2), then deaths, then moves in a random order (the first mover wins a contested cell). Rewards:
// +0.2 per hit, +5 per kill to every attacker of the victim that step, -1 on death, -0.005 per step alive. A
// dead agent ends its episode once (EndEpisode) and is switched off until the next episode; the episode ends
// when a team is wiped out (each team's EndGroupEpisode) or after m_MaxSteps steps (GroupEpisodeInterrupted),
// then everybody restarts and the arena requests their decisions again (ending an episode in AgentPreStep drops
// the request the DecisionRequester made earlier in that event, see CoopNavArea). Stats per episode (Average, as
// the sim): Battle/kills_team0, Battle/kills_team1, Battle/team0_win (1: team 0 made more kills, 0: fewer, 0.5:
// as many; a wiped-out team has fewer). Agents' transforms follow their cells (one unit per cell).
// Groups: each team is a SimpleMultiAgentGroup, team 0's created first, both in Start, so with several arenas in a
// scene each arena's teams have consecutive ids (Unity numbers groups 1, 2, ... in creation order): the sim's
// group_id = 2 * area + team + 1 when the arenas start in order. The trainer tells the arenas' battles apart by
// these groups (mean actions and outcomes per group); without them a scene of several arenas would be one battle.
// A disabled agent leaves its group (SimpleMultiAgentGroup.RegisterAgent subscribes to Agent.OnAgentDisabled), so
// ResetArena registers every agent again.
using System.Collections.Generic;
using Unity.MLAgents;
using UnityEngine;

namespace Unimarl.Examples
{
    public sealed class BattleArena : MonoBehaviour
    {
        public const int NumActions = 21, FirstAttack = 13, Channels = 5;
        const float MaxHp = 10f, Damage = 2f, HitReward = 0.2f, KillReward = 5f, DeathPenalty = -1f, StepCost = -0.005f;
        /// <summary>Actions 1-12: (row, column) offsets of the move targets; 13-20: of the attacked cells; in the
        /// acting team's frame (see <see cref="Frame"/>).</summary>
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

        /// <summary>Side of the local view (LocalView holds View * View * Channels floats).</summary>
        public int View { get { return m_View; } }
        public int Size { get { return m_Size; } }

        /// <summary>Sets the arena's agents (the scene builder; before the arena starts).</summary>
        public void Configure(BattleAgent[] agents) { m_Agents = agents; }

        System.Random m_Random;
        bool[,] m_Wall;
        BattleAgent[,] m_Occupant;
        int m_Step;
        readonly int[] m_Kills = new int[2];
        SimpleMultiAgentGroup[] m_Groups;

        /// <summary>The id of <paramref name="team"/>'s SimpleMultiAgentGroup (GetId()); 0 before the arena
        /// starts.</summary>
        public int GroupId(int team) { return m_Groups == null ? 0 : m_Groups[team].GetId(); }

        void Start()
        {
            m_Random = new System.Random(m_Seed);
            m_Wall = new bool[m_Size, m_Size];
            int left = (m_Size - 1) / 2;  // interior columns drawn: the left half, with the middle one if there is one
            for (int r = 0; r < m_Size; r++)
                for (int c = 0; c < m_Size; c++)
                    m_Wall[r, c] = r == 0 || c == 0 || r == m_Size - 1 || c == m_Size - 1
                        || (c <= left ? m_Random.NextDouble() < m_Obstacles : m_Wall[r, m_Size - 1 - c]);
            CheckStartRoom();
            m_Occupant = new BattleAgent[m_Size, m_Size];
            m_Groups = new[] { new SimpleMultiAgentGroup(), new SimpleMultiAgentGroup() };  // team 0 first
            Academy.Instance.AgentPreStep += OnPreStep;
            ResetArena();
        }

        void OnDestroy()
        {
            if (Academy.IsInitialized) Academy.Instance.AgentPreStep -= OnPreStep;
            if (m_Groups != null) foreach (var group in m_Groups) group.Dispose();
        }

        bool Blocked(Vector2Int cell)
        {
            return cell.x < 0 || cell.y < 0 || cell.x >= m_Size || cell.y >= m_Size || m_Wall[cell.x, cell.y];
        }

        BattleAgent At(Vector2Int cell) { return Blocked(cell) ? null : m_Occupant[cell.x, cell.y]; }

        /// <summary>The map cell at (row, column) <paramref name="offset"/> from <paramref name="agent"/> in its
        /// team's frame: team 1's column offsets are negated.</summary>
        public static Vector2Int Frame(BattleAgent agent, Vector2Int offset)
        {
            return new Vector2Int(agent.Cell.x + offset.x, agent.Cell.y + (agent.Team == 0 ? offset.y : -offset.y));
        }

        /// <summary>First and end (exclusive) start column of <paramref name="team"/>: mirror images.</summary>
        void StartColumns(int team, out int first, out int end)
        {
            int half = m_Size / 2;
            first = team == 0 ? 1 : m_Size - half;
            end = team == 0 ? half : m_Size - 1;
        }

        void CheckStartRoom()
        {
            for (int team = 0; team < 2; team++)
            {
                int first, end, free = 0, members = 0;
                StartColumns(team, out first, out end);
                for (int r = 1; r < m_Size - 1; r++)
                    for (int c = first; c < end; c++)
                        if (!m_Wall[r, c]) free++;
                foreach (var agent in m_Agents) if (agent.Team == team) members++;
                if (free < members)
                    throw new System.InvalidOperationException(string.Format(
                        "team {0} has {1} agents but {2} free start cells on a {3}x{3} map; raise m_Size or lower "
                        + "m_Obstacles", team, members, free, m_Size));
            }
        }

        void ResetArena()
        {
            m_Step = 0;
            m_Kills[0] = m_Kills[1] = 0;
            System.Array.Clear(m_Occupant, 0, m_Occupant.Length);
            foreach (var agent in m_Agents)
            {
                int first, end;
                StartColumns(agent.Team, out first, out end);
                Vector2Int cell;
                do cell = new Vector2Int(m_Random.Next(1, m_Size - 1), m_Random.Next(first, end));
                while (m_Wall[cell.x, cell.y] || m_Occupant[cell.x, cell.y] != null);
                Place(agent, cell);
                agent.Hp = MaxHp;
                agent.Alive = true;
                agent.gameObject.SetActive(true);
                m_Groups[agent.Team].RegisterAgent(agent);  // again: switching it off unregistered it
                m_Occupant[cell.x, cell.y] = agent;
            }
        }

        /// <summary>1 = allowed, 0 = masked, for the 21 actions of <paramref name="agent"/> (its team's frame).</summary>
        public void FillMask(BattleAgent agent, float[] mask)
        {
            mask[0] = 1f;
            for (int i = 0; i < Moves.Length; i++)
            {
                var to = Frame(agent, Moves[i]);
                mask[1 + i] = Blocked(to) || m_Occupant[to.x, to.y] != null ? 0f : 1f;
            }
            for (int i = 0; i < Attacks.Length; i++)
            {
                var other = At(Frame(agent, Attacks[i]));
                mask[FirstAttack + i] = other != null && other.Team != agent.Team ? 1f : 0f;
            }
        }

        /// <summary>The V x V x 5 view around <paramref name="agent"/>, row-major, channels last (as the sim); row i,
        /// column j is the cell (i - V/2, j - V/2) away in the agent's team's frame.</summary>
        public float[] LocalView(BattleAgent agent)
        {
            int r = m_View / 2;
            var view = new float[m_View * m_View * Channels];
            for (int i = 0; i < m_View; i++)
                for (int j = 0; j < m_View; j++)
                {
                    var cell = Frame(agent, new Vector2Int(i - r, j - r));
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

        /// <summary>(column, row) / (size - 1) in the agent's team's frame (team 1: column size - 1 - c).</summary>
        public float[] Position(BattleAgent agent)
        {
            int column = agent.Team == 0 ? agent.Cell.y : m_Size - 1 - agent.Cell.y;
            return new[] { column / (float)(m_Size - 1), agent.Cell.x / (float)(m_Size - 1) };
        }

        void OnPreStep(int academyStepCount)
        {
            if (academyStepCount == 0) return;  // nothing has acted yet
            var hitters = new Dictionary<BattleAgent, List<BattleAgent>>();
            foreach (var agent in m_Agents)
            {
                if (!agent.Alive || agent.ChosenAction < FirstAttack) continue;
                var victim = At(Frame(agent, Attacks[agent.ChosenAction - FirstAttack]));
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
                m_Kills[1 - agent.Team]++;
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
            // the groups hold the living agents (the dead left when switched off)
            foreach (var group in m_Groups)
            {
                if (wiped[0] || wiped[1]) group.EndGroupEpisode();
                else group.GroupEpisodeInterrupted();
            }
            RecordStats();
            ResetArena();
            // the new episode's first decision is this step's (Agent.cs:641-642 dropped the DecisionRequester's)
            foreach (var agent in m_Agents) agent.RequestDecision();
        }

        /// <summary>Moves <paramref name="agent"/> to <paramref name="cell"/> (row, column), its transform one unit per
        /// cell on the arena's x (columns) / z (rows, row 0 at the top) plane.</summary>
        static void Place(BattleAgent agent, Vector2Int cell)
        {
            agent.Cell = cell;
            agent.transform.localPosition = new Vector3(cell.y, 0f, -cell.x);
        }

        void RecordStats()
        {
            var stats = Academy.Instance.StatsRecorder;
            stats.Add("Battle/kills_team0", m_Kills[0], StatAggregationMethod.Average);
            stats.Add("Battle/kills_team1", m_Kills[1], StatAggregationMethod.Average);
            // more kills wins (a team wiped out has fewer), as the sim and unimarl.trainers.evaluate count a battle
            float team0Win = 0.5f + 0.5f * System.Math.Sign(m_Kills[0] - m_Kills[1]);
            stats.Add("Battle/team0_win", team0Win, StatAggregationMethod.Average);
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
                var to = Frame(agent, Moves[agent.ChosenAction - 1]);
                if (Blocked(to) || occupied.Contains(to) || !claimed.Add(to)) continue;
                m_Occupant[agent.Cell.x, agent.Cell.y] = null;
                m_Occupant[to.x, to.y] = agent;
                Place(agent, to);
            }
        }
    }
}
