using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Data;

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>
/// Row-at-a-time scoring for <see cref="PredictionEngine{TSrc, TDst}"/>: each input row is scored once, on the first
/// read of an output column, and cached for its position.
/// </summary>
internal sealed class ScoringRowMapper : IRowToRowMapper
{
    private readonly LabelTuningTransformerBase _parent;

    public ScoringRowMapper(LabelTuningTransformerBase parent, DataViewSchema inputSchema)
    {
        _parent = parent;
        InputSchema = inputSchema;
        OutputSchema = parent.GetOutputSchema(inputSchema);
    }

    public DataViewSchema InputSchema { get; }

    public DataViewSchema OutputSchema { get; }

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        var inputCount = InputSchema.Count;
        var columns = dependingColumns.ToList();
        var result = columns.Where(c => c.Index < inputCount).Select(c => InputSchema[c.Index]).ToList();
        if (columns.Any(c => c.Index >= inputCount))
        {
            result.AddRange(_parent.TextColumns(InputSchema));
        }

        return result.DistinctBy(c => c.Index);
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
        => new Row(this, input, activeColumns.Select(c => c.Index).ToHashSet());

    private sealed class Row : DataViewRow
    {
        private readonly ScoringRowMapper _mapper;
        private readonly DataViewRow _input;
        private readonly HashSet<int> _active;
        private readonly ValueGetter<ReadOnlyMemory<char>>? _text;
        private readonly ValueGetter<ReadOnlyMemory<char>>? _second;
        private long _scoredPosition = -1;
        private float[] _scores = [];

        public Row(ScoringRowMapper mapper, DataViewRow input, HashSet<int> active)
        {
            _mapper = mapper;
            _input = input;
            _active = active;
            if (active.Any(i => i >= mapper.InputSchema.Count))
            {
                var columns = mapper._parent.TextColumns(mapper.InputSchema);
                _text = input.GetGetter<ReadOnlyMemory<char>>(columns[0]);
                _second = columns.Count > 1 ? input.GetGetter<ReadOnlyMemory<char>>(columns[1]) : null;
            }
        }

        public override DataViewSchema Schema => _mapper.OutputSchema;

        public override long Position => _input.Position;

        public override long Batch => _input.Batch;

        public override bool IsColumnActive(DataViewSchema.Column column) => _active.Contains(column.Index);

        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            var inputCount = _mapper.InputSchema.Count;
            if (column.Index < inputCount)
            {
                return _input.GetGetter<TValue>(_mapper.InputSchema[column.Index]);
            }

            var getter = _mapper._parent.OutputColumns[column.Index - inputCount].MakeGetter(Current);
            return getter as ValueGetter<TValue>
                ?? throw new InvalidOperationException($"Column '{column.Name}' is {column.Type}; it cannot be read as {typeof(TValue).Name}.");
        }

        private float[] Current()
        {
            if (_scoredPosition != _input.Position || _scoredPosition < 0)
            {
                ReadOnlyMemory<char> text = default, second = default;
                _text!(ref text);
                _second?.Invoke(ref second);
                _scores = _mapper._parent.Runtime.Score([new TextInput(text.ToString(), _second is null ? null : second.ToString())])[0];
                _scoredPosition = _input.Position;
            }

            return _scores;
        }
    }
}
