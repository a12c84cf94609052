using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;

namespace Microsoft.ML.LabelTuning.Tests;

/// <summary>Builds tiny random LLaMA model folders (config, safetensors, the tiny tokenizer) for the tests.</summary>
internal static class TinyModels
{
    public static string TokenizerModel => Path.Combine(AppContext.BaseDirectory, "Fixtures", "tiny-tokenizer", "tokenizer.model");

    public static LlamaConfig Config(int hidden = 64, int layers = 2, int heads = 4, int kvHeads = 2, int intermediate = 128, int vocab = 400)
        => new()
        {
            HiddenSize = hidden,
            IntermediateSize = intermediate,
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            VocabSize = vocab,
            MaxPositionEmbeddings = 512,
            RmsNormEps = 1e-5,
            RopeTheta = 10000,
            BosTokenId = 1,
            EosTokenId = [2],
            TieWordEmbeddings = false,
        };

    /// <summary>Writes a random model folder and returns its path; the caller deletes it.</summary>
    public static string CreateFolder(int seed = 7, LlamaConfig? config = null)
    {
        config ??= Config();
        var folder = Directory.CreateTempSubdirectory("lt-tiny-").FullName;
        torch.random.manual_seed(seed);
        using var model = new LlamaForCausalLM(config);
        CheckpointLoader.SaveHfFolder(model, config, folder);
        File.Copy(TokenizerModel, Path.Combine(folder, "tokenizer.model"));
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"),
            """{"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}""");
        return folder;
    }
}

/// <summary>A separable toy task: each class has its own words, mixed with shared filler.</summary>
internal static class ToyData
{
    private static readonly string[] _filler = "the a this that movie film plot story scene it was is really very and but so".Split(' ');
    private static readonly string[][] _classWords =
    [
        "good great excellent wonderful superb brilliant".Split(' '),
        "bad awful terrible boring dreadful poor".Split(' '),
        "sport game team player match goal".Split(' '),
    ];

    public static string[] ClassNames => ["positive", "negative", "sport"];

    public sealed class Row
    {
        public string Text { get; set; } = string.Empty;

        public string Label { get; set; } = string.Empty;
    }

    public sealed class BinaryRow
    {
        public string Text { get; set; } = string.Empty;

        public bool Label { get; set; }
    }

    public static List<Row> Rows(int count, int seed, int classes = 3)
    {
        var random = new Random(seed);
        var rows = new List<Row>();
        for (var i = 0; i < count; i++)
        {
            var label = i % classes;
            var words = Enumerable.Range(0, random.Next(3, 9)).Select(_ => _filler[random.Next(_filler.Length)]).ToList();
            for (var k = 0; k < random.Next(1, 3); k++)
            {
                words.Insert(random.Next(words.Count + 1), _classWords[label][random.Next(_classWords[label].Length)]);
            }

            rows.Add(new Row { Text = string.Join(' ', words), Label = ClassNames[label] });
        }

        return rows;
    }

    public static List<BinaryRow> BinaryRows(int count, int seed)
        => Rows(count, seed, classes: 2).Select(r => new BinaryRow { Text = r.Text, Label = r.Label == "positive" }).ToList();
}
