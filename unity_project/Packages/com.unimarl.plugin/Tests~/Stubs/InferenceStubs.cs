// Stand-in for the inference package's ModelAsset. ML-Agents 3.0.0 depends on com.unity.sentis 2.1.0 (namespace
// and assembly Unity.Sentis; its CHANGELOG.md: "Upgraded to Sentis 2.1.0 (#6153)"); 4.x depends on
// com.unity.ai.inference (namespace and assembly Unity.InferenceEngine; 4.0.1 package.json and
// Runtime/Agent.cs "using Unity.InferenceEngine;", CHANGELOG.md 4.0.0: "Upgraded to Inference Engine 2.2.1
// (#6212)"). STUB_INFERENCE_ENGINE selects which package these stand-ins model, so code naming the other
// namespace does not compile. A 3.0.0 copy patched to the inference package (as the one under
// /work/csharp/mlagents-3.0.0, whose package.json names com.unity.ai.inference 2.6.1) is modelled by
// STUB_INFERENCE_ENGINE too.
using System;

#if STUB_INFERENCE_ENGINE
namespace Unity.InferenceEngine
#else
namespace Unity.Sentis
#endif
{
    public class ModelAsset : UnityEngine.ScriptableObject
    {
        internal byte[] Bytes;
    }
}

namespace Unimarl.Stubs
{
#if STUB_INFERENCE_ENGINE
    using ModelAsset = Unity.InferenceEngine.ModelAsset;
#else
    using ModelAsset = Unity.Sentis.ModelAsset;
#endif

    /// <summary>What the importer and the model loader do with a model (not package API).</summary>
    public static class StubInference
    {
        /// <summary>When set and returning an exception for a model, creating a policy for it throws that
        /// exception, as the inference package's model loader does for a model it cannot run.</summary>
        public static Func<ModelAsset, Exception> LoadError;

        internal static ModelAsset Import(string path, byte[] bytes)
        {
            return new ModelAsset { name = System.IO.Path.GetFileNameWithoutExtension(path), Bytes = bytes };
        }

        internal static void Load(ModelAsset model)
        {
            var error = LoadError == null || model == null ? null : LoadError(model);
            if (error != null) throw error;
        }
    }
}
