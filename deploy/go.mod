module github.com/coalesce-ml/coalesce/deploy

go 1.26.0
