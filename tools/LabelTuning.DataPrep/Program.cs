using LabelTuning.DataPrep;

return Cli.Run(args);
