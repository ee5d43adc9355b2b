module kourierlab/peers/go

go 1.19
