"""The cluster: Kubeflow Trainer v2 TrainJobs (and a local torchrun backend) that run the train stage."""
