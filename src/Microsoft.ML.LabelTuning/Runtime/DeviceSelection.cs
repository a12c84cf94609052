using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Runtime;

/// <summary>Chooses the device and dtype the way ML.NET's own TorchSharp trainers do.</summary>
internal static class DeviceSelection
{
    /// <summary>
    /// CPU by default. With <see cref="MLContext.GpuDeviceId"/> set, CUDA when it is available; when it is not,
    /// the CPU if <see cref="MLContext.FallbackToCpu"/> is true, otherwise an error.
    /// </summary>
    public static Device Select(int? gpuDeviceId, bool fallbackToCpu)
    {
        TorchRuntime.EnsureInitialized();
        if (gpuDeviceId is null)
        {
            return CPU;
        }

        if (cuda.is_available())
        {
            return new Device(DeviceType.CUDA, gpuDeviceId.Value);
        }

        if (fallbackToCpu)
        {
            return CPU;
        }

        throw new InvalidOperationException(
            $"MLContext.GpuDeviceId is {gpuDeviceId} but CUDA is not available (build with -p:TorchBackend=cuda on a machine " +
            "with an NVIDIA driver). Set MLContext.FallbackToCpu = true to train on the CPU instead.");
    }

    /// <summary>Parses a dtype name as used in Hugging Face configs.</summary>
    public static ScalarType ParseDtype(string name) => name.ToLowerInvariant() switch
    {
        "float32" or "fp32" or "f32" => ScalarType.Float32,
        "bfloat16" or "bf16" => ScalarType.BFloat16,
        "float16" or "fp16" or "f16" or "half" => ScalarType.Float16,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, $"Dtype must be float32, bfloat16 or float16 but is '{name}'."),
    };
}
