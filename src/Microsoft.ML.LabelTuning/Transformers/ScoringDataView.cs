using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>
/// The result of a label-tuning transformer's Transform: the input's columns plus the scores. Scores are computed in
/// batches: a look-ahead cursor over the text columns reads the next batch, scores it in one forward pass, and the
/// main cursor hands the rows out in order. Both cursors walk the input in the same (unshuffled) order.
/// </summary>
internal sealed class ScoringDataView : IDataView
{
    private readonly LabelTuningTransformerBase _parent;
    private readonly IDataView _input;
    private readonly OutputColumn[] _outputs;

    public ScoringDataView(LabelTuningTransformerBase parent, IDataView input)
    {
        _parent = parent;
        _input = input;
        _outputs = parent.OutputColumns;
        Schema = parent.GetOutputSchema(input.Schema);
    }

    public bool CanShuffle => false;

    public DataViewSchema Schema { get; }

    public long? GetRowCount() => _input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.ToList();
        var inputCount = _input.Schema.Count;
        var inputColumns = needed.Where(c => c.Index < inputCount).Select(c => _input.Schema[c.Index]).ToList();
        var scoring = needed.Any(c => c.Index >= inputCount);
        var main = _input.GetRowCursor(inputColumns);
        if (!scoring)
        {
            return new Cursor(this, main, null, needed);
        }

        var ahead = _input.GetRowCursor(_parent.TextColumns(_input.Schema));
        return new Cursor(this, main, ahead, needed);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null)
        => [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly ScoringDataView _view;
        private readonly DataViewRowCursor _main;
        private readonly DataViewRowCursor? _ahead;
        private readonly Queue<float[]> _pending = new();
        private readonly HashSet<int> _active;
        private readonly ValueGetter<ReadOnlyMemory<char>>? _text;
        private readonly ValueGetter<ReadOnlyMemory<char>>? _second;
        private float[] _current = [];

        private long _scored;
        private TimeSpan _scoring;

        public Cursor(ScoringDataView view, DataViewRowCursor main, DataViewRowCursor? ahead, IEnumerable<DataViewSchema.Column> active)
        {
            _view = view;
            _main = main;
            _ahead = ahead;
            _active = active.Select(c => c.Index).ToHashSet();
            if (ahead is not null)
            {
                var columns = view._parent.TextColumns(view._input.Schema);
                _text = ahead.GetGetter<ReadOnlyMemory<char>>(columns[0]);
                _second = columns.Count > 1 ? ahead.GetGetter<ReadOnlyMemory<char>>(columns[1]) : null;
            }
        }

        public override DataViewSchema Schema => _view.Schema;

        public override long Position => _main.Position;

        public override long Batch => _main.Batch;

        public override bool IsColumnActive(DataViewSchema.Column column) => _active.Contains(column.Index);

        public override ValueGetter<DataViewRowId> GetIdGetter() => _main.GetIdGetter();

        public override bool MoveNext()
        {
            if (!_main.MoveNext())
            {
                return false;
            }

            if (_ahead is not null)
            {
                if (_pending.Count == 0)
                {
                    Fill();
                }

                _current = _pending.Count > 0
                    ? _pending.Dequeue()
                    : throw new InvalidOperationException("The input data produced fewer rows on a second pass than on the first; it must be re-readable.");
            }

            return true;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            var inputCount = _view._input.Schema.Count;
            if (column.Index < inputCount)
            {
                return _main.GetGetter<TValue>(_view._input.Schema[column.Index]);
            }

            var getter = _view._outputs[column.Index - inputCount].MakeGetter(() => _current);
            return getter as ValueGetter<TValue>
                ?? throw new InvalidOperationException($"Column '{column.Name}' is {column.Type}; it cannot be read as {typeof(TValue).Name}.");
        }

        private void Fill()
        {
            var batch = new List<TextInput>();
            ReadOnlyMemory<char> text = default, second = default;
            var size = Math.Max(1, _view._parent.Runtime.Description.BatchSize) * 4;
            while (batch.Count < size && _ahead!.MoveNext())
            {
                _text!(ref text);
                _second?.Invoke(ref second);
                batch.Add(new TextInput(text.ToString(), _second is null ? null : second.ToString()));
            }

            var clock = System.Diagnostics.Stopwatch.StartNew();
            foreach (var row in _view._parent.Runtime.Score(batch))
            {
                _pending.Enqueue(row);
            }

            _scored += batch.Count;
            _scoring += clock.Elapsed;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                if (_scored > 0)
                {
                    using var channel = _view._parent.Host.Start("Scoring");
                    channel.Info($"scored {_scored} row(s) in {_scoring.TotalSeconds:F2} s: {_scored / Math.Max(1e-9, _scoring.TotalSeconds):G4} rows/s");
                    _scored = 0;
                }

                _main.Dispose();
                _ahead?.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
