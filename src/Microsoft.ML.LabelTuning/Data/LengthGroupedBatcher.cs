namespace Microsoft.ML.LabelTuning.Data;

/// <summary>
/// Forms batches of examples of similar length, so dynamic padding wastes little. Examples are shuffled, cut into
/// mega-chunks of <c>50 × batchSize</c>, sorted by length inside each chunk, split into batches, and the batches are
/// shuffled again. The order depends only on the seed and the epoch, so a resumed run sees the same batches.
/// </summary>
internal static class LengthGroupedBatcher
{
    private const int ChunkBatches = 50;

    public static IReadOnlyList<int[]> Plan(IReadOnlyList<int> lengths, int batchSize, int seed, int epoch, bool shuffle = true)
    {
        var indices = Enumerable.Range(0, lengths.Count).ToArray();
        if (!shuffle)
        {
            // Scoring: sort by length for speed; callers restore the original order.
            return indices.OrderBy(i => lengths[i]).Chunk(batchSize).ToList();
        }

        var random = new Random(unchecked((seed * 1_000_003) + (epoch * 7919) + 17)); // not HashCode: it is randomised per process
        random.Shuffle(indices);
        var batches = new List<int[]>();
        foreach (var chunk in indices.Chunk(batchSize * ChunkBatches))
        {
            var sorted = chunk.OrderByDescending(i => lengths[i]).ThenBy(i => i).ToArray();
            batches.AddRange(sorted.Chunk(batchSize));
        }

        var order = batches.ToArray();
        random.Shuffle(order);
        return order;
    }
}
