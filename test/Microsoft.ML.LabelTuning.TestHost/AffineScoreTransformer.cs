using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.TestHost;
using Microsoft.ML.Runtime;

[assembly: LoadableClass(typeof(AffineScoreTransformer), null, typeof(SignatureLoadModel),
    "Affine score (test)", AffineScoreTransformer.LoaderSignature)]

namespace Microsoft.ML.LabelTuning.TestHost;

/// <summary>
/// The smallest transformer that exercises the ML.NET internals seam: it saves its weights with
/// SaveBinaryStream, registers a loader with LoadableClass, and maps Features to Score = W·x + b.
/// </summary>
public sealed class AffineScoreTransformer : RowToRowTransformerBase
{
    internal const string LoaderSignature = "LtAffineScoreTest";
    private readonly float[] _weights;
    private readonly float _bias;
    private readonly string _inputColumn;

    public AffineScoreTransformer(IHostEnvironment env, string inputColumn, float[] weights, float bias)
        : base(env.Register(nameof(AffineScoreTransformer)))
    {
        _inputColumn = inputColumn;
        _weights = weights;
        _bias = bias;
    }

    // Called by ML.NET through LoadableClass.
    private AffineScoreTransformer(IHostEnvironment env, ModelLoadContext ctx)
        : base(env.Register(nameof(AffineScoreTransformer)))
    {
        ctx.CheckAtModel(GetVersionInfo());
        _inputColumn = ctx.LoadNonEmptyString();
        float[]? weights = null;
        var bias = 0f;
        ctx.TryLoadBinaryStream("Weights.bin", reader =>
        {
            var count = reader.ReadInt32();
            weights = new float[count];
            for (var i = 0; i < count; i++)
            {
                weights[i] = reader.ReadSingle();
            }

            bias = reader.ReadSingle();
        });
        _weights = weights ?? throw new InvalidDataException("Weights.bin is missing from the saved AffineScoreTransformer.");
        _bias = bias;
    }

    private static VersionInfo GetVersionInfo()
        => new VersionInfo(
            modelSignature: "LTAFFINE",
            verWrittenCur: 0x00010001,
            verReadableCur: 0x00010001,
            verWeCanReadBack: 0x00010001,
            loaderSignature: LoaderSignature,
            loaderAssemblyName: typeof(AffineScoreTransformer).Assembly.FullName);

    protected override void SaveModel(ModelSaveContext ctx)
    {
        ctx.CheckAtModel();
        ctx.SetVersionInfo(GetVersionInfo());
        ctx.SaveNonEmptyString(_inputColumn);
        ctx.SaveBinaryStream("Weights.bin", writer =>
        {
            writer.Write(_weights.Length);
            foreach (var w in _weights)
            {
                writer.Write(w);
            }

            writer.Write(_bias);
        });
    }

    protected override IRowMapper MakeRowMapper(DataViewSchema schema) => new Mapper(this, schema);

    private sealed class Mapper : MapperBase
    {
        private readonly AffineScoreTransformer _parent;
        private readonly int _inputIndex;

        public Mapper(AffineScoreTransformer parent, DataViewSchema schema)
            : base(parent.Host, schema, parent)
        {
            _parent = parent;
            if (!schema.TryGetColumnIndex(parent._inputColumn, out _inputIndex))
            {
                throw new ArgumentException($"Column '{parent._inputColumn}' was not found in the input schema.");
            }
        }

        protected override DataViewSchema.DetachedColumn[] GetOutputColumnsCore()
            => [new DataViewSchema.DetachedColumn("Score", NumberDataViewType.Single)];

        protected override Delegate MakeGetter(DataViewRow input, int iinfo, Func<int, bool> activeOutput, out Action? disposer)
        {
            disposer = null;
            var features = input.GetGetter<VBuffer<float>>(input.Schema[_inputIndex]);
            var buffer = default(VBuffer<float>);
            ValueGetter<float> getter = (ref float value) =>
            {
                features(ref buffer);
                var sum = _parent._bias;
                var dense = buffer.DenseValues().ToArray();
                for (var i = 0; i < dense.Length && i < _parent._weights.Length; i++)
                {
                    sum += dense[i] * _parent._weights[i];
                }

                value = sum;
            };
            return getter;
        }

        protected override Func<int, bool> GetDependenciesCore(Func<int, bool> activeOutput)
            => col => col == _inputIndex && activeOutput(0);

        protected override void SaveModel(ModelSaveContext ctx) => _parent.SaveModel(ctx);
    }
}
