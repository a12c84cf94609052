namespace Microsoft.ML.LabelTuning.Data;

/// <summary>How inputs longer than the maximum sequence length are cut.</summary>
public enum Truncation
{
    /// <summary>Keep the first tokens.</summary>
    Head,

    /// <summary>Keep the first quarter and the last three quarters of the budget (often better for reviews).</summary>
    HeadTail,
}
