namespace Microsoft.ML.LabelTuning.Tokenizers;

/// <summary>
/// The tokenizer of a LLaMA-family checkpoint folder: text to token ids and back, with the special tokens and
/// BOS/EOS rules its config files give. Load it once with <see cref="FromModelFolder"/> and reuse it; it is
/// immutable and safe to call from several threads.
/// </summary>
/// <remarks>
/// <para>
/// <c>tokenizer.model</c> (SentencePiece BPE) is used when present, else <c>tokenizer.json</c> (Hugging Face). A
/// tokenizer.model, or a tokenizer.json of the SentencePiece kind that LLaMA-2, Mistral and TinyLlama ship (BPE with
/// byte fallback behind a <c>Prepend "▁"</c> + <c>Replace " " → "▁"</c> normalizer or a Metaspace pre-tokenizer), is
/// read into this library's own BPE engine and gives SentencePiece's ids (Microsoft.ML.Tokenizers 2.0.1 and 3.0.0 can
/// read neither exactly: its LlamaTokenizer breaks equal-score merge ties differently and its BpeTokenizer has no byte
/// fallback). A byte-level BPE tokenizer.json (LLaMA 3.x, GPT-2) is run by Microsoft.ML.Tokenizers' BpeTokenizer.
/// Unigram models are refused with a clear error.
/// </para>
/// <para>
/// Special tokens come from <c>special_tokens_map.json</c>, then <c>tokenizer_config.json</c>, then the ids in
/// <c>config.json</c>, then the tokenizer file itself (its template, or <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c>,
/// <c>&lt;unk&gt;</c> when those exist).
/// </para>
/// <para>
/// By default text is plain text: a literal <c>&lt;s&gt;</c> in user text is spelled as characters, as SentencePiece
/// does, so data cannot inject control tokens. Non-special added tokens are always matched, as Hugging Face does.
/// Pass <c>parseSpecialTokens: true</c> to match special tokens too (for rendered chat templates). Added tokens are
/// matched in the raw text, as Hugging Face does for <c>normalized: false</c> tokens (all special tokens it writes).
/// </para>
/// </remarks>
internal sealed class LlamaTextTokenizer
{
    /// <summary>The SentencePiece model file name.</summary>
    public const string SentencePieceFileName = "tokenizer.model";

    /// <summary>The Hugging Face tokenizer file name.</summary>
    public const string HuggingFaceFileName = "tokenizer.json";

    private readonly TokenModel _model;
    private readonly Dictionary<int, AddedToken> _addedById;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly HashSet<int> _specialIds;
    private readonly AddedTokenMatcher _plainMatcher;
    private readonly AddedTokenMatcher _specialMatcher;

    private LlamaTextTokenizer(TokenModel model, TokenizerFolderSettings settings)
    {
        _model = model;
        TokenizerFile = model.SourceFile;
        ChatTemplate = settings.ChatTemplate;
        ModelMaxLength = settings.ModelMaxLength;

        _addedById = [];
        _addedByContent = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
        foreach (var token in model.AddedTokens.Concat(settings.AddedTokens))
        {
            AddAddedToken(token);
        }

        var defaults = model.Defaults;
        BosId = ResolveSpecial(settings.Bos, settings.ConfigBosId, defaults.BosToken ?? "<s>");
        EosId = ResolveSpecial(settings.Eos, settings.ConfigEosId, defaults.EosToken ?? "</s>");
        UnkId = ResolveSpecial(settings.Unk, configId: null, defaults.UnkToken ?? "<unk>");
        PadId = ResolveSpecial(settings.Pad, settings.ConfigPadId, modelDefault: null);

        // Named special tokens are special everywhere: skipped by Decode, and matched in text only on request.
        foreach (var id in new[] { BosId, EosId, UnkId, PadId })
        {
            if (id is int special)
            {
                MarkSpecial(special);
            }
        }

        foreach (var named in settings.AdditionalSpecialTokens)
        {
            MarkSpecial(TokenToId(named.Content) ?? throw MissingToken(named));
        }

        _specialIds = [.. _addedById.Values.Where(t => t.Special).Select(t => t.Id)];
        foreach (var id in new[] { BosId, EosId, UnkId, PadId })
        {
            if (id is int special)
            {
                _specialIds.Add(special); // even an id no vocabulary names (a config.json id beyond the tokenizer)
            }
        }

        AddBos = settings.AddBos ?? defaults.AddBos ?? BosId is not null;
        AddEos = settings.AddEos ?? defaults.AddEos ?? false;
        if (AddBos && BosId is null)
        {
            throw new InvalidDataException(
                $"The tokenizer in '{TokenizerFile}' is set to add a BOS token (add_bos_token or its template) but none is defined: " +
                $"set bos_token in {TokenizerFolderSettings.TokenizerConfigFile} or bos_token_id in {TokenizerFolderSettings.ModelConfigFile}.");
        }

        if (AddEos && EosId is null)
        {
            throw new InvalidDataException(
                $"The tokenizer in '{TokenizerFile}' is set to add an EOS token (add_eos_token or its template) but none is defined: " +
                $"set eos_token in {TokenizerFolderSettings.TokenizerConfigFile} or eos_token_id in {TokenizerFolderSettings.ModelConfigFile}.");
        }

        // BOS/EOS/PAD may be ids from config.json that no vocabulary names; Encode emits them, so the table must fit them too.
        VocabSize = new[] { model.Count, _addedById.Count == 0 ? 0 : _addedById.Keys.Max() + 1 }
            .Concat(new[] { BosId, EosId, UnkId, PadId }.OfType<int>().Select(id => id == int.MaxValue ? id : id + 1))
            .Max();
        _plainMatcher = new AddedTokenMatcher(_addedById.Values.Where(t => !t.Special));
        _specialMatcher = new AddedTokenMatcher(_addedById.Values);
    }

    /// <summary>The tokenizer file that was loaded (tokenizer.model or tokenizer.json).</summary>
    public string TokenizerFile { get; }

    /// <summary>Id of the beginning-of-sequence token, or null when the tokenizer has none.</summary>
    public int? BosId { get; }

    /// <summary>Id of the end-of-sequence token, or null when the tokenizer has none.</summary>
    public int? EosId { get; }

    /// <summary>Id of the padding token, or null when the checkpoint defines none (LLaMA-2 does not).</summary>
    public int? PadId { get; }

    /// <summary>Id of the unknown token, or null when the tokenizer has none.</summary>
    public int? UnkId { get; }

    /// <summary>Whether <see cref="Encode(string?, bool)"/> starts a sequence with BOS (add_bos_token; LLaMA's default is true).</summary>
    public bool AddBos { get; }

    /// <summary>Whether <see cref="Encode(string?, bool)"/> ends a sequence with EOS (add_eos_token; LLaMA's default is false).</summary>
    public bool AddEos { get; }

    /// <summary>One more than the largest token id, added tokens included: the smallest embedding table that fits.</summary>
    public int VocabSize { get; }

    /// <summary>
    /// The id to pad batches with: <see cref="PadId"/> if defined, else <see cref="EosId"/>, else 0. A model without a pad
    /// token must still batch; the attention mask, not this id, keeps padding out of the computation.
    /// </summary>
    public int PaddingId => PadId ?? EosId ?? 0;

    /// <summary>The longest input the tokenizer config declares (model_max_length), or null when it sets no limit.</summary>
    public int? ModelMaxLength { get; }

    /// <summary>The Jinja chat template from tokenizer_config.json (or chat_template.jinja), kept as text; null if none.</summary>
    public string? ChatTemplate { get; }

    /// <summary>Loads the tokenizer of a checkpoint folder.</summary>
    /// <param name="folder">A folder holding tokenizer.model or tokenizer.json, and optionally tokenizer_config.json,
    /// special_tokens_map.json, chat_template.jinja and config.json.</param>
    /// <exception cref="ArgumentException"><paramref name="folder"/> is null or blank.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">The folder holds neither tokenizer file.</exception>
    /// <exception cref="InvalidDataException">A file is malformed or uses an unsupported feature; the message names the file.</exception>
    public static LlamaTextTokenizer FromModelFolder(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Tokenizer folder '{folder}' does not exist.");
        }

        var sentencePiece = Path.Combine(folder, SentencePieceFileName);
        var huggingFace = Path.Combine(folder, HuggingFaceFileName);
        TokenModel model;
        if (File.Exists(sentencePiece))
        {
            model = SentencePieceModelFile.Load(sentencePiece);
        }
        else if (File.Exists(huggingFace))
        {
            model = HuggingFaceTokenizerFile.Load(huggingFace);
        }
        else
        {
            throw new FileNotFoundException(
                $"No tokenizer in '{folder}': looked for '{SentencePieceFileName}' (SentencePiece) and '{HuggingFaceFileName}' (Hugging Face), and neither exists.",
                huggingFace);
        }

        return new LlamaTextTokenizer(model, TokenizerFolderSettings.Read(folder));
    }

    /// <summary>Encodes <paramref name="text"/> as plain text: [BOS] + ids (+ EOS) per <see cref="AddBos"/> and <see cref="AddEos"/>.</summary>
    /// <param name="text">The text; null or empty gives just the special tokens.</param>
    /// <param name="addSpecialTokens">Whether to add BOS/EOS as configured.</param>
    public IReadOnlyList<int> Encode(string? text, bool addSpecialTokens = true)
        => Encode(text, addSpecialTokens, parseSpecialTokens: false);

    /// <summary>Encodes <paramref name="text"/>, optionally matching special tokens written in it (<c>&lt;s&gt;</c>, chat markers).</summary>
    /// <param name="text">The text; null or empty gives just the special tokens.</param>
    /// <param name="addSpecialTokens">Whether to add BOS/EOS as configured.</param>
    /// <param name="parseSpecialTokens">Whether special tokens in the text become their ids (Hugging Face's default) rather than characters.</param>
    public IReadOnlyList<int> Encode(string? text, bool addSpecialTokens, bool parseSpecialTokens)
    {
        var ids = new List<int>((text?.Length ?? 0) / 3 + 2);
        AppendSequence(text, addSpecialTokens, parseSpecialTokens, ids);
        return ids.ToArray();
    }

    /// <summary>
    /// Encodes two texts as one sequence, as transformers' LlamaTokenizer builds pairs:
    /// [BOS] first [EOS] [BOS] second [EOS], each BOS/EOS only when <see cref="AddBos"/>/<see cref="AddEos"/>.
    /// </summary>
    public IReadOnlyList<int> EncodePair(string? first, string? second)
    {
        var ids = new List<int>(((first?.Length ?? 0) + (second?.Length ?? 0)) / 3 + 4);
        AppendSequence(first, addSpecialTokens: true, parseSpecialTokens: false, ids);
        AppendSequence(second, addSpecialTokens: true, parseSpecialTokens: false, ids);
        return ids.ToArray();
    }

    /// <summary>Decodes ids to text. Ids the tokenizer does not know are skipped, as Hugging Face does.</summary>
    /// <param name="ids">Token ids.</param>
    /// <param name="skipSpecialTokens">Leave out BOS, EOS, PAD, UNK and other special tokens.</param>
    /// <exception cref="ArgumentOutOfRangeException">An id is negative.</exception>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var kept = new List<int>();
        foreach (var id in ids)
        {
            if (id < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(ids), id, "Token ids must not be negative.");
            }

            if (!skipSpecialTokens || !_specialIds.Contains(id))
            {
                kept.Add(id);
            }
        }

        return _model.Decode(kept, _addedById);
    }

    /// <summary>The number of ids <see cref="Encode(string?, bool)"/> gives for <paramref name="text"/>, BOS/EOS included.</summary>
    public int CountTokens(string? text) => Encode(text).Count;

    /// <summary>The id of a token written exactly as in the vocabulary (<c>"▁Hello"</c>, <c>"&lt;s&gt;"</c>), or null.</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedByContent.TryGetValue(token, out var added))
        {
            return added.Id;
        }

        return _model.TryGetId(token, out var id) ? id : null;
    }

    /// <summary>The vocabulary entry of <paramref name="id"/> (<c>"▁Hello"</c>, <c>"&lt;0x0A&gt;"</c>), or null when there is none.</summary>
    public string? IdToToken(int id)
        => _addedById.TryGetValue(id, out var added) ? added.Content : _model.GetToken(id);

    private void AppendSequence(string? text, bool addSpecialTokens, bool parseSpecialTokens, List<int> ids)
    {
        if (addSpecialTokens && AddBos)
        {
            ids.Add(BosId!.Value);
        }

        if (!string.IsNullOrEmpty(text))
        {
            var matcher = parseSpecialTokens ? _specialMatcher : _plainMatcher;
            if (matcher.IsEmpty)
            {
                _model.Encode(text, atTextStart: true, ids);
            }
            else
            {
                matcher.Split(text, (segment, atStart) => _model.Encode(segment, atStart, ids), token => ids.Add(token.Id));
            }
        }

        if (addSpecialTokens && AddEos)
        {
            ids.Add(EosId!.Value);
        }
    }

    private void AddAddedToken(AddedToken token)
    {
        if (_addedById.TryAdd(token.Id, token))
        {
            _addedByContent.TryAdd(token.Content, token);
        }
    }

    private void MarkSpecial(int id)
    {
        if (_addedById.TryGetValue(id, out var added))
        {
            if (!added.Special)
            {
                var special = added with { Special = true };
                _addedById[id] = special;
                if (_addedByContent.TryGetValue(added.Content, out var byContent) && byContent.Id == id)
                {
                    _addedByContent[added.Content] = special;
                }
            }
        }
        else if (_model.GetToken(id) is string content && !_addedByContent.ContainsKey(content))
        {
            AddAddedToken(new AddedToken(id, content, Special: true));
        }
    }

    private int? ResolveSpecial(NamedToken? named, int? configId, string? modelDefault)
    {
        if (named is not null)
        {
            return TokenToId(named.Content) ?? throw MissingToken(named);
        }

        if (configId is not null)
        {
            return configId;
        }

        return modelDefault is null ? null : TokenToId(modelDefault);
    }

    private InvalidDataException MissingToken(NamedToken named)
        => new($"'{named.File}' names {named.Key} \"{named.Content}\" but neither '{TokenizerFile}' nor the added tokens contain it.");
}
