using System.Text.Json;
using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Methods.PromptTuning;

/// <summary>
/// Soft prompt tuning (with DePT and EPT as modes) as an ML.NET multiclass trainer: trainable virtual tokens before the
/// text of a frozen LLaMA and a label head on the pooled final hidden state, trained with cross-entropy. Reached as
/// <c>mlContext.MulticlassClassification.Trainers.PromptTuning(...)</c>.
/// </summary>
public sealed class PromptTuningTrainer : MulticlassLabelTuningTrainer
{
    private readonly PromptTuningOptions _options;

    internal PromptTuningTrainer(IHostEnvironment env, PromptTuningOptions options)
        : base(env, options)
    {
        _options = options;
    }

    private protected override (TuningMethod Method, JsonElement Settings) Describe()
        => (TuningMethod.PromptTuning, PromptTuningSettingsJson.From(_options));
}

/// <summary>
/// Soft prompt tuning (with DePT and EPT as modes) as an ML.NET binary trainer (Boolean label). Reached as
/// <c>mlContext.BinaryClassification.Trainers.PromptTuning(...)</c>.
/// </summary>
public sealed class PromptTuningBinaryTrainer : BinaryLabelTuningTrainer
{
    private readonly PromptTuningOptions _options;

    internal PromptTuningBinaryTrainer(IHostEnvironment env, PromptTuningOptions options)
        : base(env, options)
    {
        _options = options;
    }

    private protected override (TuningMethod Method, JsonElement Settings) Describe()
        => (TuningMethod.PromptTuning, PromptTuningSettingsJson.From(_options));
}

/// <summary>Turns validated options into the settings JSON, tokenizing InitText with the base model's tokenizer.</summary>
internal static class PromptTuningSettingsJson
{
    public static JsonElement From(PromptTuningOptions options)
    {
        int[]? initIds = null;
        if (options.Init == PromptTuningInit.Text)
        {
            var tokenizer = LlamaTextTokenizer.FromModelFolder(options.ModelPath);
            initIds = InitTokenIds(tokenizer, options.InitText!);
        }

        return JsonSerializer.SerializeToElement(options.ToSettings(initIds), SettingsJson.Options);
    }

    /// <summary>The text's own tokens (no BOS or EOS); a text with none is an error that names InitText.</summary>
    public static int[] InitTokenIds(LlamaTextTokenizer tokenizer, string text)
    {
        var ids = tokenizer.Encode(text, addSpecialTokens: false).ToArray();
        if (ids.Length == 0)
        {
            throw new ArgumentException(
                $"InitText '{text}' tokenizes to no tokens with this model's tokenizer, so it cannot start the prompt; give a text with words in it.", "InitText");
        }

        return ids;
    }
}
