"""Distributed training launchers for the kfp ``train`` component (and ``faceparse train --launcher``): one
step, three places to run it (:func:`faceparse.launch.dispatch.train_distributed` picks one).

``launcher="local"``       torchrun (``python -m torch.distributed.run --standalone``) with N processes on
                           this machine; on CPU the processes talk over gloo. What ``pipelines/run_local.py`` uses.
``launcher="pytorchjob"``  a Kubeflow Training Operator v1 ``PyTorchJob`` (kubeflow.org/v1) with ``workers``
                           pods × ``gpus_per_worker`` GPUs (one process per GPU, NCCL), created with the
                           kubeflow-training SDK's ``TrainingClient`` (the job built as the SDK's own models),
                           waited for, failures surfaced with the master's log tail.
``launcher="trainjob"``    a Kubeflow Trainer v2 ``TrainJob`` (trainer.kubeflow.org/v1alpha1) referencing the
                           torch-distributed ClusterTrainingRuntime ``faceparse-torch-distributed``
                           (infra/k8s/clustertrainingruntime.yaml): ``workers`` nodes × ``gpus_per_worker``
                           processes, created and polled through the plain Kubernetes CustomObjectsApi
                           (:class:`~faceparse.launch.trainjob.TrainJobClient`), failures surfaced with node 0's
                           (and failed pods') log tail.

For both cluster launchers the dataset reaches the pods through S3 (staged by the component) or a PVC; the
model bundle and the training result come back through S3. All end in the same place:
``faceparse.train.train(params)`` (the contract's step function) running under torchrun, which sets RANK /
WORLD_SIZE / LOCAL_RANK for it. In a pod, ``python -m faceparse.launch worker --staged s3://…`` fetches the
staged inputs, runs torchrun with the PET_* (/ MASTER_*) environment the operator sets, and (node rank 0)
uploads the bundle.

Modules: ``dispatch`` (train_distributed), ``torchrun`` (the local launcher), ``process`` (one torchrun
process: the train step), ``pytorchjob`` and ``trainjob`` (the cluster launchers), ``manifest`` (the pod
pieces both share), ``settings`` (image, secrets, the cluster settings' defaults), ``staging`` (inputs and
outputs through S3), ``worker`` (the pods' entry), ``errors``, ``params`` (the kfp components' params from the
params.yaml text the pipeline carries), ``__main__`` (``python -m faceparse.launch worker|render``).
"""
