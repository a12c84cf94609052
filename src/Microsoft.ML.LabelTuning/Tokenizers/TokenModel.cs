namespace Microsoft.ML.LabelTuning.Tokenizers;

/// <summary>
/// What a tokenizer file describes, in Hugging Face's terms: normalizer, optional Metaspace pre-tokenizer, BPE model,
/// decoder, added tokens and the special tokens the file implies. tokenizer.json and tokenizer.model are both read
/// into this one form (the latter as transformers' LlamaConverter would convert it), so they encode alike.
/// Special-token policy, added-token splitting and BOS/EOS belong to <see cref="LlamaTextTokenizer"/>.
/// </summary>
internal sealed class TokenModel
{
    private readonly BytePairEncoder? _encoder;
    private readonly Microsoft.ML.Tokenizers.BpeTokenizer? _byteLevel;
    private readonly Normalizer? _normalizer;
    private readonly MetaspacePreTokenizer? _preTokenizer;
    private readonly TokenDecoder? _decoder;
    private readonly IReadOnlyDictionary<string, int> _vocabulary;
    private readonly Dictionary<int, string> _tokens; // not an array sized by the largest id, which a file may set to anything

    internal TokenModel(
        string sourceFile,
        IReadOnlyDictionary<string, int> vocabulary,
        BytePairEncoder? encoder,
        Normalizer? normalizer,
        MetaspacePreTokenizer? preTokenizer,
        TokenDecoder? decoder,
        IReadOnlyList<AddedToken> addedTokens,
        TokenModelDefaults defaults)
    {
        SourceFile = sourceFile;
        _vocabulary = vocabulary;
        _encoder = encoder;
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _decoder = decoder;
        AddedTokens = addedTokens;
        Defaults = defaults;
        Count = vocabulary.Count == 0 ? 0 : checked(vocabulary.Values.Max() + 1); // readers keep ids below int.MaxValue
        _tokens = new Dictionary<int, string>(vocabulary.Count);
        foreach (var (token, id) in vocabulary)
        {
            _tokens[id] = token;
        }
    }

    /// <summary>
    /// A byte-level BPE (LLaMA-3, GPT-2) run by Microsoft.ML.Tokenizers: <paramref name="byteLevel"/> pre-tokenizes,
    /// maps bytes to its characters and merges; it knows no added tokens, which the caller splits out first.
    /// </summary>
    internal TokenModel(
        string sourceFile,
        IReadOnlyDictionary<string, int> vocabulary,
        Microsoft.ML.Tokenizers.BpeTokenizer byteLevel,
        IReadOnlyList<AddedToken> addedTokens,
        TokenModelDefaults defaults)
        : this(sourceFile, vocabulary, encoder: null, normalizer: null, preTokenizer: null, decoder: null, addedTokens, defaults)
    {
        _byteLevel = byteLevel;
    }

    /// <summary>The file the model was read from, for error messages.</summary>
    internal string SourceFile { get; }

    /// <summary>One more than the largest id of the model's own vocabulary.</summary>
    internal int Count { get; }

    /// <summary>Tokens matched whole in raw text: tokenizer.json's added_tokens, or a SentencePiece model's control and user-defined pieces.</summary>
    internal IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>The special tokens and flags the file implies when no config says otherwise.</summary>
    internal TokenModelDefaults Defaults { get; }

    internal bool TryGetId(string token, out int id) => _vocabulary.TryGetValue(token, out id);

    internal string? GetToken(int id) => _tokens.TryGetValue(id, out var token) ? token : null;

    /// <summary>
    /// Appends the ids of <paramref name="segment"/>, a stretch of text that holds no added token.
    /// <paramref name="atTextStart"/> says whether it starts the whole text (Metaspace's <c>prepend_scheme: first</c>).
    /// </summary>
    internal void Encode(string segment, bool atTextStart, List<int> ids)
    {
        if (_byteLevel is not null)
        {
            ids.AddRange(_byteLevel.EncodeToIds(segment, considerPreTokenization: true, considerNormalization: false));
            return;
        }

        var text = _normalizer?.Apply(segment) ?? segment;
        if (_preTokenizer is null)
        {
            _encoder!.Encode(text, ids);
            return;
        }

        var words = new List<string>();
        _preTokenizer.Apply(text, atTextStart, words);
        foreach (var word in words)
        {
            _encoder!.Encode(word, ids);
        }
    }

    /// <summary>
    /// Decodes <paramref name="ids"/>: ids in <paramref name="addedTokens"/> become their content, others their vocabulary
    /// entry, ids unknown to both are skipped (as Hugging Face does), and the decoder turns the tokens into text.
    /// </summary>
    internal string Decode(IReadOnlyList<int> ids, IReadOnlyDictionary<int, AddedToken> addedTokens)
    {
        if (_byteLevel is not null)
        {
            return DecodeByteLevel(ids, addedTokens);
        }

        var tokens = new List<string>(ids.Count);
        foreach (var id in ids)
        {
            if (addedTokens.TryGetValue(id, out var added))
            {
                tokens.Add(added.Content);
            }
            else if (GetToken(id) is string token)
            {
                tokens.Add(token);
            }
        }

        if (_decoder is null)
        {
            return string.Join(' ', tokens); // Hugging Face joins undecoded tokens with spaces
        }

        _decoder.Apply(tokens);
        return string.Concat(tokens);
    }

    /// <summary>Byte-level decoding as Hugging Face's ByteLevel decoder does it: each run of vocabulary ids becomes the text its bytes spell, added tokens their content.</summary>
    private string DecodeByteLevel(IReadOnlyList<int> ids, IReadOnlyDictionary<int, AddedToken> addedTokens)
    {
        var text = new System.Text.StringBuilder();
        var run = new List<int>();
        foreach (var id in ids)
        {
            if (addedTokens.TryGetValue(id, out var added))
            {
                Flush();
                text.Append(added.Content);
            }
            else if (_tokens.ContainsKey(id))
            {
                run.Add(id);
            }
        }

        Flush();
        return text.ToString();

        void Flush()
        {
            if (run.Count > 0)
            {
                text.Append(_byteLevel!.Decode(run));
                run.Clear();
            }
        }
    }
}

/// <summary>Special tokens and BOS/EOS flags a tokenizer file implies on its own.</summary>
/// <param name="BosToken">Beginning-of-sequence token, if the file names one.</param>
/// <param name="EosToken">End-of-sequence token, if the file names one.</param>
/// <param name="UnkToken">Unknown token, if the file names one.</param>
/// <param name="AddBos">Whether the file's own template adds BOS, or null when it says nothing.</param>
/// <param name="AddEos">Whether the file's own template adds EOS, or null when it says nothing.</param>
internal sealed record TokenModelDefaults(string? BosToken, string? EosToken, string? UnkToken, bool? AddBos, bool? AddEos);
