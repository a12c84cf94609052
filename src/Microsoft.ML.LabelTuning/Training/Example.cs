namespace Microsoft.ML.LabelTuning.Training;

/// <summary>One encoded training example.</summary>
/// <param name="Ids">Token ids, special tokens included.</param>
/// <param name="Label">0-based class for sequence classification; ignored in token mode.</param>
/// <param name="TokenLabels">Token mode: a class per token, -100 where no label applies (special tokens, non-first sub-tokens).</param>
internal sealed record Example(int[] Ids, int Label, int[]? TokenLabels = null);
