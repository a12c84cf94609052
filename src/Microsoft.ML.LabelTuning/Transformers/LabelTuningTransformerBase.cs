using System.Text;
using System.Text.Json;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>
/// The scoring side shared by every label-tuning trainer: adds score columns to the data, scores in batches for
/// <see cref="ITransformer.Transform"/> and row by row for <see cref="PredictionEngine{TSrc, TDst}"/>, and saves
/// itself into ML.NET model zips.
/// </summary>
public abstract class LabelTuningTransformerBase : ITransformer, IDisposable
{
    private readonly ClassifierRuntime _runtime;
    private OutputColumn[]? _outputColumns;

    private protected LabelTuningTransformerBase(IHostEnvironment env, ClassifierRuntime runtime, string name)
    {
        Host = env.Register(name);
        _runtime = runtime;
    }

    /// <summary>Gets the class names, in key order.</summary>
    public IReadOnlyList<string> ClassNames => _runtime.Description.ClassNames;

    /// <summary>Gets the number of trainable parameters that were tuned (adapter and head).</summary>
    public long TrainableParameterCount => _runtime.Classifier.TrainableParameters().Sum(p => p.Parameter.numel());

    /// <summary>Gets the base model folder this model was trained on.</summary>
    public string BaseModelPath => _runtime.Description.BaseModelPath;

    /// <summary>Gets the text put before every input (chosen by GPTA or set in the options), or null.</summary>
    public string? TextPrefix => _runtime.Description.TextPrefix;

    /// <summary>
    /// Gets the scoring throughput measured on the last batch this model scored, in rows per second (padding, length
    /// grouping and the batch size included); null before anything was scored. Each pass over a transformed view
    /// also writes its rows/s to the ML.NET log.
    /// </summary>
    public double? ScoringRowsPerSecond => _runtime.LastScoringRowsPerSecond;

    bool ITransformer.IsRowToRowMapper => true;

    internal IHost Host { get; }

    internal ClassifierRuntime Runtime => _runtime;

    internal OutputColumn[] OutputColumns => _outputColumns ??= CreateOutputColumns();

    private protected abstract OutputColumn[] CreateOutputColumns();

    private protected abstract VersionInfo VersionInfo { get; }

    /// <summary>The input text columns scoring reads (one, or two for pairs).</summary>
    internal IReadOnlyList<DataViewSchema.Column> TextColumns(DataViewSchema schema)
    {
        var columns = new List<DataViewSchema.Column> { ColumnReader.RequireTextColumn(schema, _runtime.Description.TextColumn, "text") };
        if (_runtime.Description.SecondTextColumn is { } second)
        {
            columns.Add(ColumnReader.RequireTextColumn(schema, second, "second text"));
        }

        return columns;
    }

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        _ = TextColumns(inputSchema);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        foreach (var column in OutputColumns)
        {
            builder.AddColumn(column.Name, column.Type, column.Annotations);
        }

        return builder.ToSchema();
    }

    /// <inheritdoc/>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new ScoringDataView(this, input);
    }

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => new ScoringRowMapper(this, inputSchema);

    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        ctx.CheckAtModel();
        ctx.SetVersionInfo(VersionInfo);
        ModelPersistence.Save(ctx, _runtime);
    }

    /// <summary>Releases the model's tensors.</summary>
    public void Dispose()
    {
        _runtime.Dispose();
        GC.SuppressFinalize(this);
    }

    private protected static VersionInfo MakeVersionInfo(string signature, string loaderSignature, Type type)
        => new(
            modelSignature: signature,
            verWrittenCur: 0x00010001,
            verReadableCur: 0x00010001,
            verWeCanReadBack: 0x00010001,
            loaderSignature: loaderSignature,
            loaderAssemblyName: type.Assembly.FullName);
}
