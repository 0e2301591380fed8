// One sensor's observation, named as the sensor, and ML-Agents' order of an agent's sensors.
//
// ML-Agents sorts every agent's sensors by name with StringComparison.InvariantCulture before it sends them
// (Runtime/Sensors/ISensor.cs:133-137, SensorUtils.SortSensors, called from Agent.InitializeSensors, Agent.cs:1036;
// same lines in com.unity.ml-agents 3.0.0 and 4.0.1), so a model's obs_i is the i-th sensor in that order, not in
// the order the agent declares them. The comparison is culture-aware, not ordinal: "LocalView" < "position" <
// "Status" (ordinal would put "Status" before "position").
using System;
using System.Collections.Generic;

namespace Unimarl.Core
{
    public struct SensorObservation
    {
        /// <summary>The sensor's name (ISensor.GetName(), e.g. VectorSensorComponent.SensorName).</summary>
        public readonly string Name;
        /// <summary>The sensor's values, flattened (visual sensors: C, H, W).</summary>
        public readonly float[] Values;

        public SensorObservation(string name, float[] values)
        {
            if (name == null) throw new ArgumentNullException("name", "every sensor needs its name (ISensor.GetName())");
            Name = name;
            Values = values;
        }
    }

    public static class SensorOrder
    {
        /// <summary>ML-Agents' sensor comparison (SensorUtils.SortSensors).</summary>
        public static int Compare(string x, string y)
        {
            return string.Compare(x, y, StringComparison.InvariantCulture);
        }

        /// <summary>The values of <paramref name="sensors"/> in ML-Agents' order: element i feeds obs_i.
        /// List.Sort is unstable, as in SensorUtils; ML-Agents requires unique names (Agent.cs:1038-1047), so
        /// equal names are refused here.</summary>
        public static List<float[]> Sorted(IList<SensorObservation> sensors)
        {
            var order = new List<SensorObservation>(sensors);
            order.Sort((a, b) => Compare(a.Name, b.Name));
            var values = new List<float[]>(order.Count);
            for (int i = 0; i < order.Count; i++)
            {
                if (i > 0 && Compare(order[i - 1].Name, order[i].Name) == 0)
                    throw new ArgumentException("two sensors are named '" + order[i].Name + "'; ML-Agents requires unique sensor names (give each sensor component its own Sensor Name)");
                values.Add(order[i].Values);
            }
            return values;
        }
    }
}
