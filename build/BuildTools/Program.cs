using LabelTuning.BuildTools;

return args switch
{
    ["publicize", var input, var output] => Publicizer.Run(input, output),
    ["fix-native", var directory, var shimSource] => NativeFix.Run(directory, shimSource),
    ["notebook-clean", var input, var output, var repositoryRoot] => NotebookOutputs.Clean(input, output, repositoryRoot),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: BuildTools publicize <in.dll> <out.dll> | fix-native <output-dir> <shim.c> | notebook-clean <in.ipynb> <out.ipynb> <repository-root>");
    return 2;
}
