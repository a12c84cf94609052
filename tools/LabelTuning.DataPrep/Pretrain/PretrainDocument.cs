namespace LabelTuning.DataPrep.Pretrain;

/// <summary>
/// One pretraining document. <see cref="Text"/> may hold single line breaks (paragraphs, mail lines) but never a
/// blank line: in corpus.txt a blank line separates documents.
/// </summary>
internal sealed record PretrainDocument(string Source, string Id, string Text);
