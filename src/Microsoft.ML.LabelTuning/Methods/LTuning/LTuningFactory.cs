using System.Text.Json;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Methods.LTuning;

/// <summary>Builds L-Tuning prefix or prompt models; <see cref="Prepare"/> fixes the label texts' token ids.</summary>
internal sealed class LTuningFactory : ITuningMethodFactory
{
    private readonly LTuningVariant _variant;

    public LTuningFactory(LTuningVariant variant)
    {
        _variant = variant;
    }

    public JsonElement Prepare(JsonElement settings, LlamaTextTokenizer tokenizer, IReadOnlyList<string> classNames)
    {
        var parsed = Read(settings);
        var texts = parsed.LabelTexts ?? classNames.ToArray();
        if (texts.Length != classNames.Count)
        {
            throw new ArgumentException(
                $"LabelTexts has {texts.Length} text(s) but the label column has {classNames.Count} classes ({string.Join(", ", classNames)}); every class needs one, in key order.");
        }

        LTuningOptions.CheckLabelTexts(texts, parsed.LabelTexts is null ? "the label column's key values" : "LabelTexts");
        var ids = texts.Select((text, i) =>
        {
            var encoded = tokenizer.Encode(text, addSpecialTokens: false);
            if (encoded.Count == 0)
            {
                throw new ArgumentException($"Label text {i} ('{text}') encodes to no tokens.");
            }

            return (tokenizer.BosId is { } bos ? new[] { bos } : []).Concat(encoded).ToArray();
        }).ToArray();
        return JsonSerializer.SerializeToElement(parsed with { LabelTexts = texts, LabelTokenIds = ids }, SettingsJson.Options);
    }

    public IClassifierModel Build(LlamaModel model, int classCount, JsonElement settings, bool tokenLevel)
    {
        if (tokenLevel)
        {
            throw new NotSupportedException("L-Tuning classifies sequences; it has no token-classification form.");
        }

        return new LTuningClassifier(model, Read(settings) with { Variant = _variant }, classCount);
    }

    private static LTuningSettings Read(JsonElement settings)
    {
        var parsed = settings.Deserialize<LTuningSettings>(SettingsJson.Options) ?? throw new InvalidDataException("L-Tuning settings are missing.");
        if (!Enum.IsDefined(parsed.Head) || !Enum.IsDefined(parsed.Pooling) || !Enum.IsDefined(parsed.Placement))
        {
            throw new InvalidDataException($"L-Tuning settings have an unknown head ({parsed.Head}), pooling ({parsed.Pooling}) or label placement ({parsed.Placement}).");
        }

        if (parsed.MatchingRank < 1 || parsed.NegativesPerExample < 1)
        {
            throw new InvalidDataException(
                $"L-Tuning settings need MatchingRank and NegativesPerExample of at least 1 but have {parsed.MatchingRank} and {parsed.NegativesPerExample}.");
        }

        return parsed;
    }
}
