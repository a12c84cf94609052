using System.Diagnostics;

namespace Microsoft.ML.LabelTuning.Methods.Gpta;

/// <summary>
/// GPTA's outer loop, independent of how a candidate is trained: score the baseline, then each round ask the
/// assistant for prefixes (with the previous round's feedback), train and score each, and keep the best model.
/// Budgets: rounds, candidates per round, and wall-clock time (checked before each candidate starts).
/// </summary>
internal static class PrefixSearch
{
    /// <summary>Runs the search; the caller owns the returned best model (every other model is disposed here).</summary>
    /// <param name="assistant">The conversation with the chat model.</param>
    /// <param name="options">Budgets and selection metric.</param>
    /// <param name="baselinePrefix">The inner trainer's own prefix (usually null), scored first when IncludeBaseline is set.</param>
    /// <param name="trainAndEvaluate">Trains briefly with a prefix and scores the result on the validation set.</param>
    /// <param name="transcript">The log.</param>
    public static (TModel? BestModel, PrefixSearchResult Result) Run<TModel>(
        LlmPrefixAssistant assistant,
        LlmPrefixAssistantOptions options,
        string? baselinePrefix,
        Func<string?, (TModel Model, PrefixEvaluation Evaluation)> trainAndEvaluate,
        PrefixTranscript transcript)
        where TModel : class, IDisposable
    {
        var token = options.CancellationToken;
        var clock = Stopwatch.StartNew();
        var all = new List<PrefixCandidateResult>();
        var tried = new HashSet<string>(StringComparer.Ordinal);
        if (baselinePrefix is not null)
        {
            tried.Add(baselinePrefix);
        }

        TModel? bestModel = null;
        PrefixCandidateResult? best = null;
        var stoppedByTime = false;
        var roundsCompleted = 0;

        bool OutOfTime()
        {
            if (options.TimeBudget is { } budget && clock.Elapsed >= budget)
            {
                stoppedByTime = true;
            }

            return stoppedByTime;
        }

        PrefixCandidateResult Try(int round, string? prefix)
        {
            token.ThrowIfCancellationRequested();
            var started = clock.Elapsed;
            var (model, evaluation) = trainAndEvaluate(prefix);
            var score = options.Metric == PrefixSelectionMetric.Accuracy ? evaluation.Accuracy : evaluation.MacroF1;
            var result = new PrefixCandidateResult(round, prefix, score, evaluation, clock.Elapsed - started);
            all.Add(result);
            transcript.Write("candidate", round, new
            {
                prefix,
                score,
                accuracy = evaluation.Accuracy,
                macroF1 = evaluation.MacroF1,
                recall = evaluation.Recall.Select(r => double.IsNaN(r) ? (double?)null : r),
                confusion = evaluation.ConfusionMatrix,
                seconds = result.TrainingTime.TotalSeconds,
            });
            if (best is null || score > best.Score)
            {
                bestModel?.Dispose();
                bestModel = model;
                best = result;
            }
            else
            {
                model.Dispose();
            }

            options.Progress?.Report(result);
            return result;
        }

        try
        {
            if (options.IncludeBaseline)
            {
                Try(0, baselinePrefix);
            }

            List<PrefixCandidateResult> lastRound = [];
            string? lastFailure = null;
            for (var round = 1; round <= options.Rounds && !OutOfTime(); round++)
            {
                var request = round == 1 ? assistant.FirstRequest() : assistant.FeedbackRequest(round - 1, lastRound, all, lastFailure);
                var candidates = assistant.Propose(round, request, tried, out lastFailure, token);
                roundsCompleted++;
                lastRound = [];
                foreach (var prefix in candidates)
                {
                    if (OutOfTime())
                    {
                        break;
                    }

                    tried.Add(prefix);
                    lastRound.Add(Try(round, prefix));
                }
            }
        }
        catch
        {
            bestModel?.Dispose();
            throw;
        }

        if (stoppedByTime)
        {
            transcript.Write("time-budget", roundsCompleted, new { elapsedSeconds = clock.Elapsed.TotalSeconds, budgetSeconds = options.TimeBudget?.TotalSeconds });
        }

        var bestPrefix = best is null ? baselinePrefix : best.Prefix;
        var result = new PrefixSearchResult(bestPrefix, best?.Score ?? double.NaN, all, roundsCompleted,
            assistant.RejectedCandidates, assistant.FailedReplies, stoppedByTime, transcript.Path);
        transcript.Write("result", roundsCompleted, new { bestPrefix, bestScore = best?.Score, candidates = all.Count, result.RejectedCandidates, result.FailedReplies, stoppedByTime });
        return (bestModel, result);
    }
}
